"""What a step body sees: its idempotency key, attempt, correlation id, and a reply outbox."""

from __future__ import annotations

from collections.abc import Sequence

from relaybox.config import Config
from relaybox.outbox.enqueue import ReplyRequest, build_request
from relaybox.steps.intent import Intent


class StepContext:
    """Handed to a step body. Pass :attr:`key` to the downstream API as its idempotency key.

    Replies staged with :meth:`reply` are enqueued in the same transaction that stores the
    step's outcome: either both happen or neither (transactional outbox).
    """

    def __init__(
        self,
        *,
        step_id: str,
        resource_id: str,
        key: str,
        attempt: int,
        correlation_id: str,
        intent: Intent,
        config: Config,
    ) -> None:
        self.step_id = step_id
        self.resource_id = resource_id
        self.key = key
        self.attempt = attempt
        self.correlation_id = correlation_id
        self.intent = intent
        self._config = config
        self._replies: list[ReplyRequest] = []

    def reply(
        self,
        *,
        channel: str,
        thread_id: str,
        recipient: str,
        parts: Sequence[str | bytes],
        reply_key: str | None = None,
        supersede: bool = False,
    ) -> None:
        """Stage a reply to enqueue with the outcome (checked now; stored with the outcome).

        Its reply key defaults to one derived from the step key, so the same step never
        enqueues its reply twice.
        """
        request = build_request(
            self._config.channel(channel),
            thread_id=thread_id,
            recipient=recipient,
            parts=parts,
            resource_id=self.resource_id,
            reply_key=reply_key or f"{self.key}:reply:{len(self._replies)}",
            correlation_id=self.correlation_id,
            supersede=supersede,
        )
        self._replies.append(request)

    @property
    def replies(self) -> tuple[ReplyRequest, ...]:
        return tuple(self._replies)
