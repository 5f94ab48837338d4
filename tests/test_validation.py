"""One set of rules for ids and texts (relaybox/validation.py), the same in every capability."""

from __future__ import annotations

import ast
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from _outbox_helpers import fast_config
from relaybox import validation
from relaybox.errors import InvalidInbound, InvalidReply, RelayboxError
from relaybox.inbound import build_inbound
from relaybox.memory import Scope
from relaybox.memory.errors import InvalidScope
from relaybox.outbox.enqueue import build_request

SRC = Path(__file__).resolve().parents[1] / "src" / "relaybox"
CHANNEL = fast_config().channel("mem")


def _reply(**bad: object) -> Callable[[], object]:
    args: dict[str, object] = {"thread_id": "t", "recipient": "r", "parts": ["hi"], **bad}
    return lambda: build_request(CHANNEL, **args)  # type: ignore[arg-type]


def _inbound(**bad: object) -> Callable[[], object]:
    args: dict[str, object] = {
        "channel": "mem",
        "external_id": "m1",
        "thread_id": "t",
        "resource_id": "r",
        **bad,
    }
    return lambda: build_inbound(**args)  # type: ignore[arg-type]


def _scope(**bad: object) -> Callable[[], object]:
    args: dict[str, object] = {"resource_id": "r", "thread_id": "t", **bad}
    return lambda: Scope(**args)  # type: ignore[arg-type]


CASES = [
    (_reply, "thread_id", InvalidReply),
    (_reply, "recipient", InvalidReply),
    (_reply, "reply_key", InvalidReply),
    (_reply, "correlation_id", InvalidReply),
    (_inbound, "external_id", InvalidInbound),
    (_inbound, "resource_id", InvalidInbound),
    (_inbound, "correlation_id", InvalidInbound),
    (_scope, "resource_id", InvalidScope),
    (_scope, "thread_id", InvalidScope),
]


@pytest.mark.parametrize(("make", "field", "error"), CASES)
@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("a\x00b", "contains a NUL character"),
        ("", "must be a non-empty string"),
        ("  ", "must be a non-empty string"),
        ("x" * 513, "is 513 characters; the limit is 512"),
        ("\udcff", "not valid UTF-8"),
    ],
)
def test_every_capability_refuses_the_same_bad_ids(
    make: Callable[..., Callable[[], object]],
    field: str,
    error: type[RelayboxError],
    value: str,
    message: str,
) -> None:
    with pytest.raises(error, match=message):
        make(**{field: value})()


@pytest.mark.parametrize(
    ("make", "error"),
    [(lambda v: _reply(parts=[v])(), InvalidReply), (lambda v: _inbound(text=v)(), InvalidInbound)],
)
def test_texts_follow_the_same_rules(make: Callable[[object], object], error: type) -> None:
    for value, message in (
        ("a\x00b", "contains a NUL character"),
        (b"\xff\xfe", "not valid UTF-8"),
        ("bad \udcff", "not valid UTF-8"),
    ):
        with pytest.raises(error, match=message):
            make(value)


def test_correlation_ids_are_fresh_uuids_when_not_given() -> None:
    made = {
        build_request(CHANNEL, thread_id="t", recipient="r", parts=["x"]).correlation_id,
        build_inbound(channel="c", external_id="e", thread_id="t", resource_id="r").correlation_id,
        validation.correlation_id(None, error=InvalidReply),
    }
    assert len(made) == 3 and all(str(uuid.UUID(c)) == c for c in made)
    assert validation.correlation_id("mine-1", error=InvalidReply) == "mine-1"


def test_correlation_ids_are_created_in_one_place() -> None:
    """No module but validation.py makes a correlation id out of a UUID by itself."""
    offenders = []
    for path in SRC.rglob("*.py"):
        if path.name == "validation.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.keyword) and "correlation" in (node.arg or ""):
                target, value = node.arg or "", node.value
            elif isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                target, value = " ".join(ast.unparse(t) for t in targets), node.value
            else:
                continue
            if "correlation" in target and "uuid4" in ast.unparse(value):
                offenders.append(f"{path.relative_to(SRC)}: {target} = {ast.unparse(value)}")
    assert offenders == []
