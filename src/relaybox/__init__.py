"""relaybox: durable side effects for conversational agents.

Every reply reaches the user exactly once and in order; every failure lands where an operator
can query it. Start with :func:`relaybox.open` and :class:`relaybox.Worker`.
"""

from relaybox.client import Relaybox, open
from relaybox.config import ChannelConfig, Config, RetryPolicy, WorkerConfig, load_config
from relaybox.errors import (
    ConfigError,
    InvalidReply,
    InvalidState,
    NotFound,
    RelayboxError,
    ReplyKeyConflict,
    StoreUnavailable,
    UnknownChannel,
)
from relaybox.models import Attempt, Delivery, Outcome, Part, Status
from relaybox.outbox.enqueue import EnqueueResult
from relaybox.worker.worker import Worker

__all__ = [
    "Attempt",
    "ChannelConfig",
    "Config",
    "ConfigError",
    "Delivery",
    "EnqueueResult",
    "InvalidReply",
    "InvalidState",
    "NotFound",
    "Outcome",
    "Part",
    "Relaybox",
    "RelayboxError",
    "ReplyKeyConflict",
    "RetryPolicy",
    "Status",
    "StoreUnavailable",
    "UnknownChannel",
    "Worker",
    "WorkerConfig",
    "load_config",
    "open",
]
