"""The intent hash: what makes a repeat of a tool step the same step, or a wrong one.

``intent_hash`` is SHA-256 over the canonical JSON (:mod:`relaybox.jsonvalue`) of the tool
name, its arguments, the model id and the sampling settings (temperature, seed, ...). Key
order, whitespace and how an equal number is written (``1`` / ``1.0`` / ``Decimal("1.00")``)
do not change it; Python's ``hash()`` is never used, because it differs between processes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from relaybox.jsonvalue import NotJSON, canonical
from relaybox.steps.errors import InvalidIntent

INTENT_VERSION = 1  # bump only with a migration note: it changes every stored hash


@dataclass(frozen=True)
class Intent:
    """What a step is about to do. Equal intents hash equal in every process, forever.

    >>> Intent("charge_card", {"amount": 1200, "currency": "EUR"}, model="m-1",
    ...        sampling={"temperature": 0, "seed": 7}).hash[:12]           # doctest: +SKIP
    '5b1c0d0f6a2e'
    """

    tool: str
    args: Any = None
    model: str | None = None
    sampling: Mapping[str, Any] | None = None
    canonical_json: str = field(init=False, repr=False, compare=False)
    hash: str = field(init=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.tool, str) or not self.tool.strip():
            raise InvalidIntent("an intent needs a tool name (a non-empty string)")
        if self.model is not None and not isinstance(self.model, str):
            raise InvalidIntent(f"intent model must be a string, not {type(self.model).__name__}")
        if self.sampling is not None and not isinstance(self.sampling, Mapping):
            raise InvalidIntent("intent sampling must be a mapping such as {'temperature': 0}")
        document = {
            "v": INTENT_VERSION,
            "tool": self.tool,
            "args": self.args,
            "model": self.model,
            "sampling": self.sampling,
        }
        try:
            text = canonical(document, "intent")
        except NotJSON as error:
            raise InvalidIntent(f"cannot hash this intent: {error}") from None
        object.__setattr__(self, "canonical_json", text)
        object.__setattr__(self, "hash", hashlib.sha256(text.encode("utf-8")).hexdigest())


def intent_hash(
    tool: str,
    args: Any = None,
    *,
    model: str | None = None,
    sampling: Mapping[str, Any] | None = None,
) -> str:
    """The SHA-256 hex digest of an intent (see :class:`Intent`)."""
    return Intent(tool, args, model=model, sampling=sampling).hash
