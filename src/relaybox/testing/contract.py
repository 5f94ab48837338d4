"""The transport contract kit: the behaviours every relaybox transport must show.

relaybox's worker trusts a transport for one thing: to say truthfully what happened to the one
request it made. These checks pin that down, against a fake of the far side that the author
controls (for the built-in adapters, the fakes in :mod:`relaybox.testing.fakes`):

=========================  =====================================================================
check                      the transport must ...
=========================  =====================================================================
``sent``                   answer ``surfaced`` (or ``duplicate``) with the platform's message id
``rate_limited``           raise :class:`RateLimited` carrying the platform's wait
``server_error``           raise :class:`TransientError` (5xx, platform hiccup)
``bad_token``              raise :class:`PermanentError` keeping the platform's error text
``unknown_chat``           raise :class:`PermanentError` keeping the platform's error text
``hang``                   give up within its timeout: :class:`AmbiguousSend` (or transient if
                           the request certainly never left); never hang the worker
``lost_answer``            after "accepted but the answer was lost": raise
                           :class:`AmbiguousSend`; then either deduplicate a resend under the
                           same GUID (nothing shown twice) or reconcile truthfully (never
                           "not sent" for a part the user has)
``reconcile_unsent``       reconcile a part that was never sent as ``NOT_SENT`` or "cannot
                           tell", never as sent (``NOT_SENT`` if it ``reconciles``)
``concurrent``             send several parts at once from one event loop
=========================  =====================================================================

A plugin author writes one :class:`ContractSubject` (a transport pointed at a fake, plus the
fake's script and screen) and runs every check, for instance with pytest::

    import pytest
    from relaybox.testing.contract import CHECKS, run_check

    @pytest.mark.parametrize("check", sorted(CHECKS))
    async def test_contract(check):
        async with my_subject() as subject:      # your ContractSubject
            await run_check(check, subject)

Each check raises ``AssertionError`` with one line saying what the transport did wrong.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace
from enum import StrEnum
from typing import Protocol, TypeVar

from relaybox.models import Outcome
from relaybox.transports.base import (
    AmbiguousSend,
    NotSent,
    OutgoingPart,
    PermanentError,
    RateLimited,
    SendResult,
    TransientError,
    Transport,
    TransportError,
)
from relaybox.validation import new_correlation_id

T = TypeVar("T")

__all__ = ["CHECKS", "ContractSubject", "Scenario", "make_part", "run_check"]


class Scenario(StrEnum):
    """How the fake answers the next send."""

    OK = "ok"
    RATE_LIMITED = "rate_limited"  # the platform's 429 with its wait
    SERVER_ERROR = "server_error"  # 5xx
    BAD_TOKEN = "bad_token"  # authentication refused
    UNKNOWN_CHAT = "unknown_chat"  # no such chat / channel / number
    LOST = "lost"  # accepted and shown, but the answer never comes
    HANG = "hang"  # nothing shown, no answer


class ContractSubject(Protocol):
    """A transport under test, and the fake it talks to."""

    @property
    def transport(self) -> Transport:
        """Pointed at the fake, with a short send timeout (a second or two)."""

    @property
    def recipient(self) -> str:
        """A chat the fake knows."""

    @property
    def unknown_recipient(self) -> str:
        """A chat the fake answers "not found" for."""

    @property
    def timeout_seconds(self) -> float:
        """The transport's own send timeout."""

    @property
    def reconciles(self) -> bool:
        """True if the transport can read sent parts back: then ``reconcile`` must find a
        part the user has and say "not sent" for one never sent, not just "cannot tell"."""

    def next_answer(self, scenario: Scenario, *, retry_after: float = 2.0) -> None:
        """Make the fake answer the next send this way."""

    def shown(self, recipient: str) -> list[str]:
        """Texts the user sees in ``recipient``'s chat, in order."""


def make_part(recipient: str, text: str, *, index: int = 0, count: int = 1) -> OutgoingPart:
    """A part with a fresh GUID, as the worker would hand it to a transport."""
    return OutgoingPart(
        guid=str(uuid.uuid4()),
        delivery_id=1,
        thread_id=f"thread-{recipient}",
        recipient=recipient,
        text=text,
        index=index,
        count=count,
        correlation_id=new_correlation_id(),
        channel="contract",
    )


def _text(label: str) -> str:
    return f"{label} {uuid.uuid4().hex[:8]}"


async def _raises(
    subject: ContractSubject, part: OutgoingPart, kind: type[TransportError]
) -> TransportError:
    name = type(subject.transport).__name__
    try:
        result = await _bounded(subject, subject.transport.send(part))
    except TransportError as error:
        assert isinstance(error, kind), (
            f"{name}: expected {kind.__name__}, got {type(error).__name__}: {error}"
        )
        assert str(error).strip(), f"{name}: {type(error).__name__} without a message"
        return error
    raise AssertionError(f"{name}: expected {kind.__name__}, got {result!r}")


async def _bounded(subject: ContractSubject, call: Awaitable[T]) -> T:
    # The transport must give up on its own; the kit allows a margin before calling it a hang.
    limit = subject.timeout_seconds + 5.0
    try:
        async with asyncio.timeout(limit):
            return await call
    except TimeoutError:
        name = type(subject.transport).__name__
        raise AssertionError(f"{name}: no answer within {limit:g}s (its timeout + 5s)") from None


async def check_sent(subject: ContractSubject) -> None:
    part = make_part(subject.recipient, _text("hello"))
    result = await _bounded(subject, subject.transport.send(part))
    name = type(subject.transport).__name__
    assert result.outcome in (Outcome.SURFACED, Outcome.DUPLICATE), f"{name}: {result!r}"
    assert result.message_id, f"{name}: no platform message id in {result!r}"
    assert subject.shown(subject.recipient).count(part.text) == 1, f"{name}: not shown once"


async def check_rate_limited(subject: ContractSubject) -> None:
    subject.next_answer(Scenario.RATE_LIMITED, retry_after=7.0)
    part = make_part(subject.recipient, _text("limited"))
    error = await _raises(subject, part, RateLimited)
    assert isinstance(error, RateLimited)
    name = type(subject.transport).__name__
    assert error.retry_after is not None and 6.0 <= error.retry_after <= 8.0, (
        f"{name}: the platform's wait (7s) was not kept: retry_after={error.retry_after!r}"
    )
    assert part.text not in subject.shown(subject.recipient)


async def check_server_error(subject: ContractSubject) -> None:
    subject.next_answer(Scenario.SERVER_ERROR)
    part = make_part(subject.recipient, _text("flaky"))
    await _raises(subject, part, TransientError)


async def check_bad_token(subject: ContractSubject) -> None:
    subject.next_answer(Scenario.BAD_TOKEN)
    await _raises(subject, make_part(subject.recipient, _text("auth")), PermanentError)


async def check_unknown_chat(subject: ContractSubject) -> None:
    part = make_part(subject.unknown_recipient, _text("nobody"))
    await _raises(subject, part, PermanentError)


async def check_hang(subject: ContractSubject) -> None:
    subject.next_answer(Scenario.HANG)
    part = make_part(subject.recipient, _text("hang"))
    started = time.monotonic()
    try:
        result = await _bounded(subject, subject.transport.send(part))
    except (AmbiguousSend, TransientError):
        pass
    else:
        raise AssertionError(f"{type(subject.transport).__name__}: a hang answered {result!r}")
    assert time.monotonic() - started <= subject.timeout_seconds + 5.0


async def check_lost_answer(subject: ContractSubject) -> None:
    subject.next_answer(Scenario.LOST)
    part = make_part(subject.recipient, _text("lost"))
    await _raises(subject, part, AmbiguousSend)
    name = type(subject.transport).__name__
    assert subject.shown(subject.recipient).count(part.text) == 1, f"{name}: fake did not show"
    if subject.transport.dedups_by_guid:
        result = await _bounded(subject, subject.transport.send(part))
        assert result.outcome in (Outcome.SURFACED, Outcome.DUPLICATE), f"{name}: {result!r}"
        assert subject.shown(subject.recipient).count(part.text) == 1, (
            f"{name}: claims to deduplicate by GUID, but a resend was shown twice"
        )
        return
    verdict = await _bounded(subject, subject.transport.reconcile(part))
    assert not isinstance(verdict, NotSent), (
        f"{name}: reconcile said 'not sent' for a part the user has (a resend would duplicate)"
    )
    if isinstance(verdict, SendResult):
        assert verdict.outcome is not Outcome.NOT_SURFACED, f"{name}: {verdict!r}"
    elif subject.reconciles:
        raise AssertionError(f"{name}: reconcile could not find a part the user has: {verdict!r}")


async def check_reconcile_unsent(subject: ContractSubject) -> None:
    part = make_part(subject.recipient, _text("never"))
    verdict = await _bounded(subject, subject.transport.reconcile(part))
    name = type(subject.transport).__name__
    assert not (isinstance(verdict, SendResult) and verdict.outcome is Outcome.SURFACED), (
        f"{name}: reconcile claims a never-sent part arrived"
    )
    if subject.reconciles:
        assert isinstance(verdict, NotSent), f"{name}: reconcile of a never-sent part: {verdict!r}"


async def check_concurrent(subject: ContractSubject) -> None:
    parts = [
        replace(make_part(subject.recipient, _text(f"c{i}")), index=i, count=5) for i in range(5)
    ]
    results = await _bounded(subject, asyncio.gather(*(subject.transport.send(p) for p in parts)))
    assert all(r.outcome is Outcome.SURFACED for r in results), results
    shown = subject.shown(subject.recipient)
    assert all(shown.count(p.text) == 1 for p in parts)


CHECKS: dict[str, Callable[[ContractSubject], Awaitable[None]]] = {
    "sent": check_sent,
    "rate_limited": check_rate_limited,
    "server_error": check_server_error,
    "bad_token": check_bad_token,
    "unknown_chat": check_unknown_chat,
    "hang": check_hang,
    "lost_answer": check_lost_answer,
    "reconcile_unsent": check_reconcile_unsent,
    "concurrent": check_concurrent,
}


async def run_check(name: str, subject: ContractSubject) -> None:
    """Run the check called ``name`` (a key of :data:`CHECKS`) against ``subject``."""
    await CHECKS[name](subject)
