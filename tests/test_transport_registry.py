"""Pluggable transports: built-ins found by module, plugins by entry point, typed options,
platform presets overridable per channel, text limits checked (or split) at enqueue, and
spec C1's new conversations per day per sending line (both stores)."""

from __future__ import annotations

import ast
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import relaybox
from _outbox_helpers import fast_config, run_worker_until
from relaybox.config import parse_config
from relaybox.errors import ConfigError, InvalidReply
from relaybox.models import Status
from relaybox.outbox.conversations import DAY_SECONDS, daily_starts
from relaybox.outbox.enqueue import split_text
from relaybox.outbox.guid import part_guid
from relaybox.transports.memory import MemoryTransport
from relaybox.transports.registry import ENTRY_POINT_GROUP, get_kind, known_kinds


def test_builtins_are_registered_by_their_modules() -> None:
    assert {"webhook", "memory", "console", "noop"} <= set(known_kinds())
    assert get_kind("webhook").name == "webhook"


def test_config_module_knows_no_transport() -> None:
    tree = ast.parse(Path(relaybox.config.__file__).read_text(encoding="utf-8"))
    strings = {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    }
    names = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    for word in ("webhook", "telegram", "slack", "discord", "twilio", "status_url"):
        assert word not in strings
    assert "TRANSPORT_KINDS" not in names


def test_unknown_transport_names_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"channels\.x\.transport must be one of .*webhook"):
        parse_config({"channels": {"x": {"transport": "pigeon"}}})


def test_options_are_typed_and_strict() -> None:
    cfg = parse_config({"channels": {"w": {"transport": "webhook", "url": "http://h/x"}}})
    assert cfg.channels["w"].options.url == "http://h/x"
    assert cfg.channels["w"].options.dedup is True
    with pytest.raises(ConfigError, match=r"channels\.w\.dedup must be true or false"):
        parse_config({"channels": {"w": {"transport": "webhook", "url": "http://h", "dedup": 1}}})
    with pytest.raises(ConfigError, match=r"unknown key channels\.m\.url"):
        parse_config({"channels": {"m": {"transport": "memory", "url": "http://h"}}})
    with pytest.raises(ConfigError, match=r"channels\.w\.headers must be a table of strings"):
        parse_config({"channels": {"w": {"transport": "webhook", "url": "http://h", "headers": 1}}})


@pytest.fixture
def pigeon_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A third-party package, installed the way pip would: a module plus dist-info metadata."""
    (tmp_path / "relaybox_pigeon_test.py").write_text(
        textwrap.dedent(
            """
            from dataclasses import dataclass
            from relaybox.transports.memory import MemoryTransport
            from relaybox.transports.registry import TransportKind

            @dataclass(frozen=True)
            class PigeonOptions:
                loft: str
                def __post_init__(self):
                    if self.loft == "nowhere":
                        raise ValueError("loft must be somewhere")

            TRANSPORT = TransportKind(
                name="pigeon-test",
                build=lambda channel: MemoryTransport(dedup=False),
                options=PigeonOptions,
                preset={"thread_parts_per_second": 0.5, "max_part_chars": 12},
            )
            """
        ),
        encoding="utf-8",
    )
    info = tmp_path / "relaybox_pigeon_test-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: relaybox-pigeon-test\nVersion: 0.1\n", encoding="utf-8"
    )
    (info / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\npigeon-test = relaybox_pigeon_test:TRANSPORT\n", encoding="utf-8"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "pigeon-test"


def test_plugin_transport_through_entry_point(pigeon_plugin: str) -> None:
    assert pigeon_plugin in known_kinds()
    cfg = parse_config({"channels": {"p": {"transport": pigeon_plugin, "loft": "roof"}}})
    channel = cfg.channels["p"]
    assert channel.options.loft == "roof"
    assert channel.thread_parts_per_second == 0.5  # the preset
    assert channel.max_part_chars == 12
    with pytest.raises(ConfigError, match=r"channels\.p\.loft must be somewhere"):
        parse_config({"channels": {"p": {"transport": pigeon_plugin, "loft": "nowhere"}}})
    with pytest.raises(ConfigError, match=r"channels\.p\.loft is required"):
        parse_config({"channels": {"p": {"transport": pigeon_plugin}}})
    # A channel table overrides the preset.
    cfg = parse_config(
        {"channels": {"p": {"transport": pigeon_plugin, "loft": "r", "max_part_chars": 40}}}
    )
    assert cfg.channels["p"].max_part_chars == 40
    assert isinstance(get_kind(pigeon_plugin).build(cfg.channels["p"]), MemoryTransport)


# -- text limits -------------------------------------------------------------------------------


def limited(**extra: object) -> relaybox.config.Config:
    return fast_config(max_part_chars=10, **extra)


async def test_text_over_the_platform_limit_is_a_clear_error(store_url: str) -> None:
    async with relaybox.open(store_url, config=limited()) as rb:
        with pytest.raises(InvalidReply, match=r"part 2 is 11 characters; .* allows 10"):
            await rb.enqueue(channel="mem", thread_id="t", recipient="r", parts=["ok", "x" * 11])
        assert await rb.deliveries() == []


async def test_opt_in_splitting_keeps_guids_stable(store_url: str) -> None:
    async with relaybox.open(store_url, config=limited(split_long_parts=True)) as rb:
        text = "one two three four five six"
        first = await rb.enqueue(
            channel="mem", thread_id="t", recipient="r", parts=["hi", text], reply_key="k1"
        )
        again = await rb.enqueue(
            channel="mem", thread_id="t", recipient="r", parts=["hi", text], reply_key="k1"
        )
        assert not again.created
        bodies = [p.body for p in first.delivery.parts]
        assert bodies == ["hi", "one two", "three four", "five six"]
        assert [p.guid for p in first.delivery.parts] == [part_guid("k1", i) for i in range(4)]
        assert [p.guid for p in again.delivery.parts] == [p.guid for p in first.delivery.parts]


def test_split_text_never_exceeds_the_limit_and_loses_no_words() -> None:
    text = "alpha\nbeta gamma " + "x" * 25 + " delta"
    pieces = split_text(text, 10)
    assert all(0 < len(p) <= 10 for p in pieces)
    assert "".join("".join(pieces).split()) == "".join(text.split())
    assert split_text("abc", 1) == ["a", "b", "c"]


# -- new conversations per day per sending line ---------------------------------------------


async def test_new_conversations_per_day_hold_the_rest_without_burning_attempts(
    store_url: str,
) -> None:
    async with relaybox.open(store_url, config=fast_config(new_conversations_per_day=2)) as rb:
        await rb.record_inbound(
            channel="mem", external_id="in-1", thread_id="known", resource_id="bob", text="hi"
        )
        ids = []
        for thread in ("new-1", "new-2", "new-3", "known"):
            result = await rb.enqueue(channel="mem", thread_id=thread, recipient="r", parts=["x"])
            ids.append(result.delivery.id)
        transport = MemoryTransport()

        async def settled() -> bool:
            d3 = await rb.delivery(ids[2])
            return len(transport.seen) == 3 and d3.last_error is not None

        await run_worker_until(rb, transport, settled)
        assert sorted(p.thread_id for p in transport.seen) == ["known", "new-1", "new-2"]
        held = await rb.delivery(ids[2])
        assert held.status is Status.QUEUED and held.attempts == 0
        assert "new conversations today" in (held.last_error or "")
        next_day = (time.time() // DAY_SECONDS + 1) * DAY_SECONDS
        assert held.available_at >= next_day - 1.0  # waits for the next UTC day
        starts = await rb.store.run(daily_starts("mem"))
        assert [count for _day, count in starts] == [2]
