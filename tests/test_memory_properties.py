"""Property: any sequence of memory operations over several scopes matches a per-scope model.

Hypothesis drives random operations (working memory sets and deletes, thread-scoped memory,
history appends, notes, invalid writes) across three people and two threads each, against a
real store, and checks every read against a plain-Python model keyed by scope. A leak across
scopes, a lost write or a half-applied bad write shows up as a difference.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, rule, run_state_machine_as_test

from relaybox.config import MemoryConfig
from relaybox.memory import InvalidMemory, MemoryAdmin, Scope, ScopedMemory
from relaybox.store import Store

T = TypeVar("T")
PEOPLE = ["ada", "bob", "cy"]
THREADS = ["chat-1", "chat-2"]
LIMITS = MemoryConfig(max_document_bytes=2_000, max_note_bytes=200, max_message_bytes=200)

keys = st.text(min_size=0, max_size=4)
values = st.recursive(
    st.one_of(
        st.booleans(),
        st.integers(-(2**31), 2**31),
        st.floats(allow_nan=False, allow_infinity=False, width=32),
        st.text(max_size=6),
    ),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=6,
)
texts = st.text(min_size=1, max_size=20).filter(lambda t: t.strip() and "\x00" not in t)
people = st.sampled_from(PEOPLE)
threads = st.sampled_from(THREADS)


def make_machine(store: Store) -> type[RuleBasedStateMachine]:
    class ScopedMemoryModel(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.loop = asyncio.new_event_loop()
            self.run_id = uuid.uuid4().hex[:8]  # examples share the store; ids never collide
            self.docs: dict[tuple[str, str | None], dict[str, Any]] = {}
            self.versions: dict[tuple[str, str | None], int] = {}
            self.history: dict[tuple[str, str], list[tuple[str, str]]] = {}
            self.notes: dict[str, list[str]] = {}

        def resource(self, person: str) -> str:
            return f"{self.run_id}-{person}"

        def memory(self, person: str, thread: str) -> ScopedMemory:
            return ScopedMemory(store, Scope(self.resource(person), thread), LIMITS)

        def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
            return self.loop.run_until_complete(coroutine)

        def _write(self, person: str, thread: str | None, key: str, value: Any) -> None:
            """Set ``key`` (or delete it when ``value`` is None) in one document."""
            memory = self.memory(person, thread or THREADS[0])
            handle = memory.working if thread is None else memory.thread_working
            expected = {**self.docs.get((person, thread), {})}
            if value is None:
                stored = self.run(handle.merge({key: None}))
                expected.pop(key, None)
            else:
                stored = self.run(handle.update(lambda doc: {**doc, key: value}))
                expected[key] = value
            self.docs[(person, thread)] = expected
            self.versions[(person, thread)] = self.versions.get((person, thread), 0) + 1
            assert stored.document == json.loads(json.dumps(expected))
            assert stored.version == self.versions[(person, thread)]

        @rule(person=people, thread=threads, key=keys, value=values)
        def set_in_person_memory(self, person: str, thread: str, key: str, value: Any) -> None:
            self._write(person, None, key, value)

        @rule(person=people, thread=threads, key=keys, value=values)
        def set_in_thread_memory(self, person: str, thread: str, key: str, value: Any) -> None:
            self._write(person, thread, key, value)

        @rule(person=people, key=keys)
        def delete_from_person_memory(self, person: str, key: str) -> None:
            self._write(person, None, key, None)

        @rule(person=people, thread=threads, bad=st.sampled_from(["nan", "set", "huge", "key"]))
        def a_bad_write_changes_nothing(self, person: str, thread: str, bad: str) -> None:
            document: Any = {
                "nan": {"x": float("nan")},
                "set": {"x": {1, 2}},
                "huge": {"x": "y" * 3_000},
                "key": {3: "x"},
            }[bad]
            memory = self.memory(person, thread)
            with pytest.raises(InvalidMemory):
                self.run(memory.working.update(lambda doc: {**doc, **document}))
            self.check_working(person, thread)

        @rule(
            person=people, thread=threads, role=st.sampled_from(["user", "assistant"]), text=texts
        )
        def append_message(self, person: str, thread: str, role: str, text: str) -> None:
            self.run(self.memory(person, thread).history.append(role, text))
            self.history.setdefault((person, thread), []).append((role, text))

        @rule(person=people, thread=threads, text=texts)
        def add_note(self, person: str, thread: str, text: str) -> None:
            self.run(self.memory(person, thread).notes.add(text))
            self.notes.setdefault(person, []).append(text)

        @rule(person=people, thread=threads)
        def check_working(self, person: str, thread: str) -> None:
            memory = self.memory(person, thread)
            own = self.run(memory.working.get())
            per_thread = self.run(memory.thread_working.get())
            assert own.document == json.loads(json.dumps(self.docs.get((person, None), {})))
            assert own.version == self.versions.get((person, None), 0)
            expected_thread = self.docs.get((person, thread), {})
            assert per_thread.document == json.loads(json.dumps(expected_thread))

        @rule(person=people, thread=threads, n=st.integers(1, 6))
        def check_history_and_notes(self, person: str, thread: str, n: int) -> None:
            memory = self.memory(person, thread)
            recent = self.run(memory.history.recent(n))
            assert [(m.role, m.content) for m in recent] == self.history.get((person, thread), [])[
                -n:
            ]
            assert [x.text for x in self.run(memory.notes.recent(100))] == self.notes.get(
                person, []
            )

        def teardown(self) -> None:
            try:
                admin = MemoryAdmin(store)
                for person in PEOPLE:
                    shown = self.run(admin.show(self.resource(person)))
                    own = self.docs.get((person, None))
                    assert (shown.working.document if shown.working else None) == (
                        json.loads(json.dumps(own)) if own is not None else None
                    )
                    assert {t: w.document for t, w in shown.thread_working.items()} == {
                        t: json.loads(json.dumps(d))
                        for (p, t), d in self.docs.items()
                        if p == person and t is not None
                    }
                    assert [n.text for n in shown.notes] == self.notes.get(person, [])
                    assert {t.thread_id: t.messages for t in shown.threads} == {
                        t: len(m) for (p, t), m in self.history.items() if p == person
                    }
            finally:
                self.loop.close()

    return ScopedMemoryModel


def test_memory_operations_never_leak_across_scopes(store: Store) -> None:
    run_state_machine_as_test(
        make_machine(store),
        settings=settings(max_examples=50, stateful_step_count=15, deadline=None),
    )
