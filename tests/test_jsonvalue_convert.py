"""Ordinary Python values in intents and step results: one documented conversion to JSON,
and a replay returns that JSON (the same value the first run returned)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from relaybox.config import parse_config
from relaybox.jsonvalue import NotJSON, canonical, dumps, to_json
from relaybox.steps import Intent, StepContext, StepRunner, intent_hash
from relaybox.store import Store, open_store


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Size(enum.IntEnum):
    SMALL = 1


@dataclasses.dataclass(frozen=True)
class Booking:
    people: int
    at: dt.datetime
    table: uuid.UUID
    color: Color
    price: Decimal
    extras: tuple[str, ...] = ()


PARIS = dt.timezone(dt.timedelta(hours=1))
BOOKING = Booking(
    people=2,
    at=dt.datetime(2026, 11, 29, 20, 30, tzinfo=PARIS),
    table=uuid.UUID("12345678-1234-5678-1234-567812345678"),
    color=Color.RED,
    price=Decimal("12.50"),
    extras=("window",),
)
BOOKING_JSON = {
    "people": 2,
    "at": "2026-11-29T19:30:00Z",
    "table": "12345678-1234-5678-1234-567812345678",
    "color": "red",
    "price": 12.5,
    "extras": ["window"],
}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (dt.datetime(2026, 11, 29, 19, 30, 5, 120, tzinfo=dt.UTC), "2026-11-29T19:30:05.000120Z"),
        (dt.datetime(2026, 11, 29, 19, 30), "2026-11-29T19:30:00"),
        (dt.date(2026, 11, 29), "2026-11-29"),
        (dt.time(7, 5), "07:05:00"),
        (Decimal("3.00"), 3),
        (Decimal("0.1"), 0.1),
        (uuid.UUID(int=255), "00000000-0000-0000-0000-0000000000ff"),
        (Color.BLUE, "blue"),
        (Size.SMALL, 1),
        (("a", 1), ["a", 1]),
        (BOOKING, BOOKING_JSON),
        ({"nested": [BOOKING]}, {"nested": [BOOKING_JSON]}),
    ],
)
def test_ordinary_values_convert_by_the_documented_rule(value: Any, expected: Any) -> None:
    assert to_json(value) == expected
    assert dumps(value) == dumps(expected)


def test_pydantic_models_convert_with_model_dump_json_mode() -> None:
    pydantic = pytest.importorskip("pydantic")

    class Order(pydantic.BaseModel):  # type: ignore[name-defined,misc]
        id: uuid.UUID
        when: dt.date
        total: Decimal

    order = Order(id=uuid.UUID(int=1), when=dt.date(2026, 1, 2), total=Decimal("9.90"))
    converted = to_json({"order": order})
    assert converted["order"]["id"] == "00000000-0000-0000-0000-000000000001"
    assert converted["order"]["when"] == "2026-01-02"
    assert Intent("t", {"order": order}).hash == Intent("t", {"order": converted["order"]}).hash


def test_equal_instants_hash_alike_in_any_zone_and_old_hashes_do_not_move() -> None:
    paris = dt.datetime(2026, 11, 29, 20, 30, tzinfo=PARIS)
    utc = dt.datetime(2026, 11, 29, 19, 30, tzinfo=dt.UTC)
    assert intent_hash("book", {"at": paris}) == intent_hash("book", {"at": utc})
    assert intent_hash("book", {"at": paris}) == intent_hash("book", {"at": "2026-11-29T19:30:00Z"})
    # Decimals keep their exact value in the hash, as before this conversion existed.
    assert canonical({"p": Decimal("1.10")}) == '{"p":1.1}'
    assert canonical(Decimal("12345678901234567890.123")) == "12345678901234567890.123"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"tags": {"a"}}, "value.tags is a set"),
        ({"blob": b"x"}, "value.blob is a bytes"),
        ({"when": dt.timedelta(1)}, "value.when is a timedelta"),
        ({"x": Decimal("Infinity")}, "must be finite"),
        ({"b": dataclasses.replace(BOOKING, people=object())}, "value.b.people is a object"),
    ],
)
def test_values_still_without_a_json_form_are_refused_by_path(value: Any, message: str) -> None:
    with pytest.raises(NotJSON) as error:
        dumps(value)
    assert message in str(error.value)


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    opened = open_store(store_url)
    yield opened
    opened.close()


async def test_a_step_result_of_ordinary_values_replays_as_the_same_json(store: Store) -> None:
    config = parse_config({"steps": {"lease_seconds": 1}})
    runner = StepRunner(store, config)
    ran: list[int] = []

    async def book(step: StepContext) -> Booking:
        ran.append(step.attempt)
        return BOOKING

    intent = Intent("book", {"at": BOOKING.at, "price": BOOKING.price, "color": Color.RED})
    first = await runner.run("t1:book", intent, book, resource_id="alice")
    again = await runner.run("t1:book", intent, book, resource_id="alice")
    assert ran == [1]
    assert first.value == again.value == BOOKING_JSON
    assert again.replayed and not first.replayed
