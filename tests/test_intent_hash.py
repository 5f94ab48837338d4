"""The intent hash is canonical and stable: equal intents hash equal, anywhere, forever."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relaybox.jsonvalue import canonical
from relaybox.steps import Intent, InvalidIntent, intent_hash

# A JSON tree of plain values (what an LLM's tool call arguments look like).
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**53), max_value=2**53),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.text(max_size=8), children, max_size=4),
    ),
    max_leaves=20,
)
FAST = settings(max_examples=100, deadline=None)


def shuffled(value: Any, rng: random.Random) -> Any:
    """The same value with every object's keys in another insertion order."""
    if isinstance(value, dict):
        keys = list(value)
        rng.shuffle(keys)
        return {key: shuffled(value[key], rng) for key in keys}
    if isinstance(value, list):
        return [shuffled(item, rng) for item in value]
    return value


def respelled(value: Any) -> Any:
    """The same value with equal numbers written differently (1 -> 1.0 -> Decimal)."""
    if isinstance(value, dict):
        return {key: respelled(item) for key, item in value.items()}
    if isinstance(value, list):
        return tuple(respelled(item) for item in value)
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return float(value)
    if isinstance(value, float):
        # An integral float is exactly its integer; any other float is written as the
        # decimal a JSON parser would read back as that float.
        return int(value) if value.is_integer() else Decimal(repr(value))
    return value


@FAST
@given(args=json_values, seed=st.integers(0, 2**32))
def test_key_order_does_not_change_the_hash(args: Any, seed: int) -> None:
    other = shuffled(args, random.Random(seed))
    assert intent_hash("tool", args) == intent_hash("tool", other)


@FAST
@given(args=json_values)
def test_equal_numbers_written_differently_hash_equal(args: Any) -> None:
    assert intent_hash("tool", args, model="m") == intent_hash("tool", respelled(args), model="m")


@FAST
@given(args=json_values)
def test_formatting_of_a_json_document_does_not_change_the_hash(args: Any) -> None:
    compact = json.loads(json.dumps(args, separators=(",", ":")))
    spaced = json.loads(json.dumps(args, indent=4, sort_keys=True))
    assert intent_hash("t", compact) == intent_hash("t", spaced) == intent_hash("t", args)


@FAST
@given(args=json_values)
def test_canonical_text_is_json_that_reads_back_as_an_equal_value(args: Any) -> None:
    assert json.loads(canonical(args)) == args


@FAST
@given(a=json_values, b=json_values)
def test_different_arguments_hash_differently(a: Any, b: Any) -> None:
    if canonical(a) != canonical(b):
        assert intent_hash("tool", a) != intent_hash("tool", b)


@FAST
@given(number=st.integers(min_value=-(2**53), max_value=2**53))
def test_integers_and_their_float_and_decimal_spellings_agree(number: int) -> None:
    spellings = [number, float(number), Decimal(number), Decimal(f"{number}.000")]
    assert len({intent_hash("t", {"n": n}) for n in spellings}) == 1


def test_each_part_of_the_intent_counts() -> None:
    base = Intent("charge", {"amount": 1200}, model="m-1", sampling={"temperature": 0, "seed": 7})
    variants = [
        Intent("refund", {"amount": 1200}, model="m-1", sampling={"temperature": 0, "seed": 7}),
        Intent("charge", {"amount": 1201}, model="m-1", sampling={"temperature": 0, "seed": 7}),
        Intent("charge", {"amount": 1200}, model="m-2", sampling={"temperature": 0, "seed": 7}),
        Intent("charge", {"amount": 1200}, model="m-1", sampling={"temperature": 0, "seed": 8}),
        Intent("charge", {"amount": 1200}, model="m-1", sampling={"temperature": 0.5, "seed": 7}),
        Intent("charge", {"amount": "1200"}, model="m-1", sampling={"temperature": 0, "seed": 7}),
        Intent("charge", {"amount": True}, model="m-1", sampling={"temperature": 0, "seed": 7}),
    ]
    hashes = {v.hash for v in variants}
    assert base.hash not in hashes
    assert len(hashes) == len(variants)
    assert Intent("charge", {"amount": 1}).hash != Intent("charge", {"amount": True}).hash


def test_the_hash_is_pinned_across_releases() -> None:
    # Changing this value breaks every stored step: it needs a migration note, not an edit.
    intent = Intent(
        "charge_card",
        {"amount": 1200, "currency": "EUR", "meta": {"b": [1, 2.5], "a": None}},
        model="model-1",
        sampling={"seed": 7, "temperature": 0.0},
    )
    assert intent.canonical_json == (
        '{"args":{"amount":1200,"currency":"EUR","meta":{"a":null,"b":[1,2.5]}},'
        '"model":"model-1","sampling":{"seed":7,"temperature":0},"tool":"charge_card","v":1}'
    )
    assert intent.hash == "7459352057fe6068f2dbf95e069e92c2443223daf41c85fd56e29c9a20815e15"


def test_the_hash_is_the_same_in_another_process() -> None:
    # Python's hash() is salted per process; the intent hash must not be.
    code = (
        "from relaybox.steps import intent_hash;"
        "print(intent_hash('book_table', {'people': 2, 'at': '19:30', 'where': 'Chez Ada'}))"
    )
    other = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert other == intent_hash("book_table", {"where": "Chez Ada", "at": "19:30", "people": 2.0})


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"x": float("nan")}, "intent.args.x is nan; JSON numbers must be finite"),
        ({"x": float("inf")}, "must be finite"),
        ({"x": Decimal("NaN")}, "must be finite"),
        ({"tags": {"a", "b"}}, "intent.args.tags is a set, which is not a JSON value (sets"),
        ({"blob": b"\x00"}, "intent.args.blob is a bytes"),
        ({"when": object()}, "intent.args.when is a object"),
        ({1: "one"}, "intent.args has a key 1 of type int; JSON object keys must be strings"),
        ({"s": "\ud800"}, "intent.args.s is not valid UTF-8 text"),
        ({"list": [1, [2, {"deep": float("nan")}]]}, "intent.args.list[1][1].deep is nan"),
    ],
)
def test_values_without_a_canonical_form_are_refused(args: Any, message: str) -> None:
    with pytest.raises(InvalidIntent, match="cannot hash this intent") as error:
        Intent("tool", args)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_cycles_and_absurd_nesting_are_refused_clearly() -> None:
    looped: list[Any] = []
    looped.append(looped)
    with pytest.raises(InvalidIntent, match="nested more than 64 levels"):
        Intent("tool", looped)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tool": ""}, "needs a tool name"),
        ({"tool": "t", "model": 3}, "model must be a string"),
        ({"tool": "t", "sampling": [("seed", 1)]}, "sampling must be a mapping"),
        ({"tool": "t", "sampling": {"temperature": float("nan")}}, "intent.sampling.temperature"),
    ],
)
def test_bad_intent_parts_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidIntent, match=message):
        Intent(**kwargs)
