"""The contract kit can fail: transports that break the contract in the ways that cause
duplicates or lost waits are caught by the check that names the behaviour."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest

from relaybox.testing.contract import run_check
from relaybox.testing.loopback import LoopbackReceiver
from relaybox.testing.subjects import WebhookSubject, webhook_subject
from relaybox.transports.base import (
    NOT_SENT,
    NotSent,
    OutgoingPart,
    RateLimited,
    SendResult,
    TransientError,
)
from relaybox.transports.webhook import WebhookTransport


@dataclass
class Wrapped:
    inner: WebhookTransport
    claims_dedup: bool | None = None

    @property
    def dedups_by_guid(self) -> bool:
        return self.inner.dedups_by_guid if self.claims_dedup is None else self.claims_dedup

    async def send(self, part: OutgoingPart) -> SendResult:
        return await self.inner.send(part)

    async def reconcile(self, part: OutgoingPart) -> SendResult | NotSent | None:
        return await self.inner.reconcile(part)

    async def aclose(self) -> None:
        await self.inner.aclose()


class ForgetsTheWait(Wrapped):
    """Maps a 429 to a plain transient error: the worker would burn attempts on it."""

    async def send(self, part: OutgoingPart) -> SendResult:
        try:
            return await self.inner.send(part)
        except RateLimited as error:
            raise TransientError(str(error)) from error


class SaysNotSent(Wrapped):
    """Reconcile answers "not sent" without looking: the worker would resend, twice shown."""

    async def reconcile(self, part: OutgoingPart) -> SendResult | NotSent | None:
        return NOT_SENT


@asynccontextmanager
async def showing_every_copy(wrapper: type[Wrapped], **kw: bool) -> AsyncIterator[WebhookSubject]:
    receiver = LoopbackReceiver(dedup=False, hang_seconds=3.0).start()
    transport = wrapper(WebhookTransport(receiver.url, dedup=False, timeout_seconds=1.0), **kw)
    subject = WebhookSubject(receiver, transport, 1.0)  # type: ignore[arg-type]
    receiver.behaviour = subject.behaviour  # type: ignore[assignment]
    try:
        yield subject
    finally:
        await transport.aclose()
        receiver.stop()


async def test_a_transport_that_loses_the_platforms_wait_fails_rate_limited() -> None:
    async with webhook_subject() as subject:
        subject.transport = ForgetsTheWait(subject.transport)  # type: ignore[arg-type]
        with pytest.raises(AssertionError, match="expected RateLimited, got TransientError"):
            await run_check("rate_limited", subject)


async def test_a_false_dedup_claim_fails_lost_answer() -> None:
    async with showing_every_copy(Wrapped, claims_dedup=True) as subject:
        with pytest.raises(AssertionError, match="a resend was shown twice"):
            await run_check("lost_answer", subject)


async def test_a_reconcile_that_guesses_fails_lost_answer() -> None:
    async with showing_every_copy(SaysNotSent) as subject:
        with pytest.raises(AssertionError, match="reconcile said 'not sent'"):
            await run_check("lost_answer", subject)


async def test_an_honest_non_deduplicating_transport_passes() -> None:
    async with showing_every_copy(Wrapped) as subject:
        await run_check("lost_answer", subject)  # reconcile: "cannot tell" (no status_url)
        await run_check("reconcile_unsent", subject)
