"""The ``relaybox`` command line: one sub-command per operator question or action.

Each capability registers its commands in its own module here; errors a user can cause are
printed as one line (``error: ...``) with exit status 1, never a traceback.
"""

from __future__ import annotations

import sys

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

__all__ = ["app", "main"]

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


def main() -> None:
    try:
        app(standalone_mode=True)
    except RelayboxError as error:  # raised outside a command body (e.g. while loading config)
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
