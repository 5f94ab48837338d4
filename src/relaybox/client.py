"""The agent-facing API: open a store, enqueue replies, look at them, cancel them."""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType

from relaybox.config import Config, load_config
from relaybox.models import Attempt, Delivery, Status
from relaybox.outbox import inspect, transitions
from relaybox.outbox.enqueue import EnqueueResult, EnqueueUnit, build_request
from relaybox.store import DEFAULT_URL, Store, open_store


class Relaybox:
    """One handle on a relaybox store, for agent code (asyncio).

    >>> rb = relaybox.open("sqlite:///relaybox.db")                      # doctest: +SKIP
    >>> result = await rb.enqueue(                                       # doctest: +SKIP
    ...     channel="sms", thread_id="chat-42", recipient="+15550100",
    ...     parts=["Found 3 flights.", "Cheapest: 212 EUR.", "Book it?"],
    ...     reply_key="inbound-9f2c:reply")
    >>> result.delivery.parts[0].guid                                    # doctest: +SKIP
    'c6f0...'
    """

    def __init__(self, store: Store, config: Config) -> None:
        self.store = store
        self.config = config

    async def enqueue(
        self,
        *,
        channel: str,
        thread_id: str,
        recipient: str,
        parts: Sequence[str | bytes],
        resource_id: str | None = None,
        reply_key: str | None = None,
        correlation_id: str | None = None,
        supersede: bool = False,
    ) -> EnqueueResult:
        """Store a reply of ``parts`` in one transaction; every part gets its GUID now.

        The same ``reply_key`` enqueued again returns the stored delivery (``created`` is
        False). ``supersede=True`` cancels this thread's queued replies that have not started.
        """
        request = build_request(
            self.config.channel(channel),
            thread_id=thread_id,
            recipient=recipient,
            parts=parts,
            resource_id=resource_id,
            reply_key=reply_key,
            correlation_id=correlation_id,
            supersede=supersede,
        )
        return await self.store.run(EnqueueUnit(request))

    async def delivery(self, delivery_id: int) -> Delivery:
        return await self.store.read(inspect.get_delivery(delivery_id))

    async def deliveries(
        self, *, status: Status | None = None, thread_id: str | None = None, limit: int = 100
    ) -> list[Delivery]:
        return await self.store.read(
            inspect.list_deliveries(status=status, thread_id=thread_id, limit=limit)
        )

    async def attempts(self, delivery_id: int) -> list[Attempt]:
        return await self.store.read(inspect.attempts_of(delivery_id))

    async def cancel(self, delivery_id: int, reason: str = "cancelled") -> Delivery:
        """Cancel a queued delivery (or stop a sending one at its next part boundary)."""
        return await self.store.run(transitions.cancel(delivery_id, reason))

    def close(self) -> None:
        self.store.close()

    async def __aenter__(self) -> Relaybox:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def open(  # relaybox.open() reads naturally, like sqlite3.connect()
    url: str | None = None, *, config: Config | str | None = None
) -> Relaybox:
    """Open a relaybox store. ``url`` defaults to the config's ``[store] url``, then
    ``$RELAYBOX_DB``, then ``sqlite:///relaybox.db``; ``config`` is a :class:`Config` or a
    path to relaybox.toml (default: ``./relaybox.toml`` if present)."""
    import os

    loaded = config if isinstance(config, Config) else load_config(config)
    chosen = url or os.environ.get("RELAYBOX_DB") or loaded.store_url or DEFAULT_URL
    return Relaybox(open_store(chosen), loaded)
