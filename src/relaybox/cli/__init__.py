"""The ``relaybox`` command line: one sub-command per operator question or action.

Each capability registers its commands in its own module here; errors a user can cause are
printed as one line (``error: ...``) with exit status 1, never a traceback.
"""

from __future__ import annotations

import os
import sys
import traceback
import typing
from collections.abc import Iterator, Sequence
from typing import Any

import typer
from typer._click import exceptions as click_exceptions
from typer.exceptions import Abort, Exit

from relaybox.cli import (
    console,
    deliveries,
    failures,
    inbound,
    maintenance,
    operate,
    trace,
    workers,
)
from relaybox.cli import memory as memory_cli
from relaybox.cli import platforms as platforms_cli
from relaybox.cli import steps as steps_cli
from relaybox.cli import tasks as tasks_cli
from relaybox.cli import turns as turns_cli
from relaybox.cli.app import app
from relaybox.errors import RelayboxError

__all__ = ["app", "command", "main", "run"]

operate.register(app)
deliveries.register(app)
failures.register(app)
inbound.register(app)
trace.register(app)
maintenance.register(app)
steps_cli.register(app)
memory_cli.register(app)
console.register(app)
turns_cli.register(app)
tasks_cli.register(app)
platforms_cli.register(app)
workers.register(app)


# Integers the stores can hold (SQLite INTEGER and PostgreSQL BIGINT are 64-bit signed): an
# option or argument outside this range is a usage error, never an overflow deep in a driver.
INT_MIN, INT_MAX = -(2**63), 2**63 - 1


def command() -> Any:
    """The ``relaybox`` command tree, with every integer option and argument range-checked."""
    root = typer.main.get_command(app)
    for cmd in walk(root):
        for param in cmd.params:
            descriptor = getattr(param, "type_descriptor", None)
            if descriptor is None or not _is_int(descriptor.annotation):
                continue
            info = descriptor.parameter_info
            info.min = INT_MIN if info.min is None else max(info.min, INT_MIN)
            info.max = INT_MAX if info.max is None else min(info.max, INT_MAX)
            param._runtime_param = None  # rebuilt from the bounds above
    return root


def _is_int(annotation: Any) -> bool:
    """``int``, ``int | None`` or ``list[int]`` (not bool, which is an int too)."""
    if annotation is int:
        return True
    return any(_is_int(inner) for inner in typing.get_args(annotation))


def walk(cmd: Any) -> Iterator[Any]:
    """Every command of the tree, groups included (a group may take options itself)."""
    yield cmd
    for sub in getattr(cmd, "commands", {}).values():
        yield from walk(sub)


def run(args: Sequence[str] | None = None) -> int:
    """Run ``relaybox`` with ``args``; return its exit status. Never raises, never a traceback.

    Usage errors (an unknown option, a value out of range) exit 2 and errors a user can cause
    exit 1, each as one ``error: ...`` line on stderr. An unexpected error is one line too
    (``error: internal error ...``); ``RELAYBOX_DEBUG=1`` shows its traceback.
    """
    argv = list(sys.argv[1:] if args is None else args)
    refused = _bad_argument(argv)
    if refused is not None:
        _error(refused, None)
        return 2
    try:
        result = command().main(args=argv, prog_name="relaybox", standalone_mode=False)
    except Exit as done:
        return int(done.exit_code or 0)
    except click_exceptions.NoArgsIsHelpError as usage:
        sys.stderr.write(usage.ctx.get_help() + "\n" if usage.ctx is not None else "")
        return 2
    except click_exceptions.UsageError as usage:
        _error(usage.format_message(), usage.ctx)
        return 2
    except click_exceptions.ClickException as problem:
        _error(problem.format_message(), None)
        return int(problem.exit_code or 1)
    except Abort:
        _error("aborted", None)
        return 1
    except RelayboxError as error:  # raised outside a command body (e.g. while loading config)
        _error(str(error), None)
        return 1
    except KeyboardInterrupt:
        _error("interrupted", None)
        return 130
    except Exception as error:  # noqa: BLE001 - the last resort: one line, not a traceback
        if os.environ.get("RELAYBOX_DEBUG"):
            traceback.print_exc()
        _error(
            f"internal error {type(error).__name__}: {error} (RELAYBOX_DEBUG=1 shows where)", None
        )
        return 1
    return result if isinstance(result, int) else 0


def _bad_argument(argv: list[str]) -> str | None:
    """Arguments no command can take: NUL characters, bytes that are not UTF-8."""
    for number, arg in enumerate(argv, 1):
        if "\x00" in arg:
            return f"argument {number} contains a NUL character"
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:  # the OS handed over bytes that are not UTF-8
            shown = arg.encode("utf-8", errors="backslashreplace").decode("ascii", "replace")
            return f"argument {number} is not valid UTF-8 text: {shown[:80]}"
    return None


def _error(message: str, ctx: Any) -> None:
    line = " ".join(str(message).split()) or "failed"
    hint = ""
    if ctx is not None and ctx.command_path:
        hint = f" (see {ctx.command_path} --help)"
    text = f"error: {line}{hint}\n"
    sys.stderr.buffer.write(text.encode("utf-8", errors="backslashreplace"))
    sys.stderr.flush()


def main() -> None:
    sys.exit(run())
