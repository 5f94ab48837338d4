"""Acknowledged parts of all of a worker's deliveries, recorded together.

Every delivery a worker holds waits, after each send, for its cursor write to commit before it
sends the next part: that is the per-part guarantee. Those writes need not be separate
statements, though. The parts acknowledged during one turn of the event loop are recorded by
one set-based unit of work (:func:`relaybox.outbox.transitions.record_sent_many`), and each
runner is released only after that unit's transaction committed. Compared with one unit per
part this saves, per part, the statements, the savepoint and the thread hop; the guarantee is
the same.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Future

from relaybox.errors import StoreUnavailable
from relaybox.outbox import transitions as tr
from relaybox.store import Store

_Waiter = tuple[tr.SentPart, "asyncio.Future[bool]"]


class AckBatcher:
    """Collects :class:`~relaybox.outbox.transitions.SentPart` s and records them in batches."""

    def __init__(
        self,
        store: Store,
        *,
        max_batch: int = 1024,
        on_batch: Callable[[int], None] | None = None,
        on_next_heads: Callable[[list[int]], None] | None = None,
    ) -> None:
        self._store = store
        self._max_batch = max_batch
        self._on_batch = on_batch  # the observer's ack_batch: group-commit size metric
        # The worker's claim loop: deliveries that became their thread's head (their
        # predecessor was delivered by this batch), to claim without a scan.
        self._on_next_heads = on_next_heads
        self._pending: list[_Waiter] = []
        self._scheduled = False

    async def record_sent(self, sent: tr.SentPart) -> bool:
        """Record one acknowledged part; True once its cursor moved and that committed.

        False if the lease was lost (the attempt row is still written). Raises
        :class:`StoreUnavailable` if the store failed: the cursor may not have moved.
        """
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bool] = loop.create_future()
        self._pending.append((sent, waiter))
        if not self._scheduled:
            # Flush after every runner that is ready in this turn of the loop has added its part.
            self._scheduled = True
            loop.call_soon(self._flush)
        return await waiter

    def _flush(self) -> None:
        self._scheduled = False
        pending, self._pending = self._pending, []
        while pending:
            batch, pending = _one_per_delivery(pending, self._max_batch)
            self._submit(batch)

    def _submit(self, batch: list[_Waiter]) -> None:
        loop = asyncio.get_running_loop()
        try:
            done = self._store.submit(tr.record_sent_many([sent for sent, _ in batch]))
        except StoreUnavailable as error:
            _settle(batch, None, error)
            return
        if self._on_batch is not None:
            self._on_batch(len(batch))

        def on_commit(future: Future[tr.AcksRecorded]) -> None:  # runs on the store's thread
            error = future.exception()
            result = None if error is not None else future.result()
            loop.call_soon_threadsafe(self._settle, batch, result, error)

        done.add_done_callback(on_commit)

    def _settle(
        self,
        batch: list[_Waiter],
        result: tr.AcksRecorded | None,
        error: BaseException | None,
    ) -> None:
        _settle(batch, None if result is None else result.moved, error)
        if result is not None and result.next_heads and self._on_next_heads is not None:
            self._on_next_heads(result.next_heads)


def _one_per_delivery(pending: list[_Waiter], limit: int) -> tuple[list[_Waiter], list[_Waiter]]:
    """Split off a batch with at most one part per delivery (a batch fences per delivery)."""
    batch: list[_Waiter] = []
    rest: list[_Waiter] = []
    seen: set[int] = set()
    for item in pending:
        key = item[0].lease.delivery_id
        if key in seen or len(batch) >= limit:
            rest.append(item)
        else:
            seen.add(key)
            batch.append(item)
    return batch, rest


def _settle(batch: list[_Waiter], result: list[bool] | None, error: BaseException | None) -> None:
    for index, (_, waiter) in enumerate(batch):
        if waiter.done():  # the runner was cancelled (shutdown) while waiting
            continue
        if isinstance(error, StoreUnavailable):
            # Each runner gets its own exception object (they are raised in different tasks).
            own = StoreUnavailable(str(error))
            own.__cause__ = error
            waiter.set_exception(own)
        elif error is not None:
            waiter.set_exception(error)
        else:
            assert result is not None
            waiter.set_result(result[index])
