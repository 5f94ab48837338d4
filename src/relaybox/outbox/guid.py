"""Stable client GUIDs: fixed at enqueue, the same in every process and after every restart.

A part's GUID is ``uuid5(reply_key, index)``, so two replies share GUIDs only if they share a
reply key. Reply keys the library derives itself (the answer to an inbound message, a step's
reply, a turn's reply) are built from ids that every store numbers from 1, so they start with
the store's identity (:func:`store_identity`, a random id written once by migration 0006):
two stores behind one deduplicating receiver (staging and production, a store re-created
after a reset, a move from SQLite to PostgreSQL) never produce the same GUID. An explicit
``reply_key`` is used as given: it is the caller's promise that it is unique wherever its
GUIDs may meet (and the same explicit key gives the same GUIDs in every store, on purpose).
"""

from __future__ import annotations

import uuid

from relaybox.errors import StoreUnavailable
from relaybox.store import Tx

# Fixed forever: changing it would give every part ever enqueued a new identity.
_NAMESPACE = uuid.UUID("6f1c1f0e-8a1b-5b7e-9c7d-72656c617962")


def part_guid(reply_key: str, part_index: int) -> str:
    """The GUID of part ``part_index`` of the reply ``reply_key`` (UUIDv5, deterministic)."""
    return str(uuid.uuid5(_NAMESPACE, f"{reply_key}\x1f{part_index}"))


def store_identity(tx: Tx) -> str:
    """This store's random identity (32 hex digits), the same for its whole life."""
    row = tx.fetch_one("store_identity")
    if row is None:
        raise StoreUnavailable("this store has no identity row: run `relaybox migrate` first")
    return str(row["store_id"])


def derived_reply_key(tx: Tx, local_key: str) -> str:
    """A reply key unique across stores: ``rbx-<store identity>:<local key>``."""
    return f"rbx-{store_identity(tx)}:{local_key}"
