"""Stable client GUIDs: fixed at enqueue, the same in every process and after every restart."""

from __future__ import annotations

import uuid

# Fixed forever: changing it would give every part ever enqueued a new identity.
_NAMESPACE = uuid.UUID("6f1c1f0e-8a1b-5b7e-9c7d-72656c617962")


def part_guid(reply_key: str, part_index: int) -> str:
    """The GUID of part ``part_index`` of the reply ``reply_key`` (UUIDv5, deterministic)."""
    return str(uuid.uuid5(_NAMESPACE, f"{reply_key}\x1f{part_index}"))
