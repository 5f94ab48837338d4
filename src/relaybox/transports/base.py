"""The transport protocol: how relaybox hands one part to a channel.

A transport sends one part and answers with a :class:`SendResult`, or raises one of the
errors below. The worker owns retries, leases, pacing and the resume cursor; a transport only
has to say what happened to the one request it made.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from relaybox.models import Outcome


@dataclass(frozen=True, slots=True)
class OutgoingPart:
    """Everything a transport needs to send one part."""

    guid: str  # stable client GUID: the same on every resend of this part
    delivery_id: int
    thread_id: str
    recipient: str
    text: str
    index: int
    count: int
    correlation_id: str
    channel: str


@dataclass(frozen=True, slots=True)
class SendResult:
    outcome: Outcome
    message_id: str | None = None  # the transport's own id for the message, if it gives one


class TransportError(Exception):
    """Base of the errors a transport raises; ``str()`` is kept as the attempt's error text."""


class TransientError(TransportError):
    """Did not go through, may on a retry (5xx, connection refused, ...). Burns an attempt."""


class ReceiverDown(TransientError):
    """The far side as a whole is failing (connection refused, 5xx, no connection in time).

    Its answer says nothing about this part, and will change when the receiver is back: the
    worker waits it out with backoff, **without burning an attempt**, until the reply's max
    age. An outage of the receiver must not use up the budget meant for bad parts.
    """


class PermanentError(TransportError):
    """Will never go through (bad recipient, 4xx): the delivery fails at once."""


class RateLimited(TransportError):
    """The far side asks us to wait; waiting does not burn an attempt."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Unavailable(RateLimited):
    """The transport is down for a known while (503 with Retry-After); waiting is free."""


class AmbiguousSend(TransportError):
    """The request may have reached the far side, but no answer came (timeout after sending).

    The worker resends under the same GUID if the transport deduplicates; otherwise it asks
    :meth:`Transport.reconcile`, and parks the delivery as ``unknown`` if that cannot tell.
    """


class NotSent:
    """Returned by ``reconcile`` when the far side certainly does not have the part."""


NOT_SENT = NotSent()


@runtime_checkable
class Transport(Protocol):
    """A channel adapter. Implementations must be safe to call concurrently."""

    @property
    def dedups_by_guid(self) -> bool:
        """True if the far side discards a second copy of a GUID (so resends are safe)."""

    async def send(self, part: OutgoingPart) -> SendResult:
        """Send one part; return its outcome or raise a :class:`TransportError`."""

    async def reconcile(self, part: OutgoingPart) -> SendResult | NotSent | None:
        """After an ambiguous send: did the far side get ``part``?

        Return its :class:`SendResult` if it did, :data:`NOT_SENT` if it certainly did not,
        ``None`` if it cannot tell (the delivery is then parked as ``unknown``).
        """

    async def aclose(self) -> None:
        """Release connections."""
