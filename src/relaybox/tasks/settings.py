"""Contract defaults that reload without a restart (SIGHUP, or the file changed).

A running worker (and any process that calls :meth:`LiveSettings.reload`) re-reads its
``relaybox.toml``; only the ``[tasks]`` section is applied live. A file that does not parse or
validate (0 or negative seconds, unknown keys, ...) is refused with one log line and the old
settings stay. New values apply to tasks started afterwards: a task keeps the contract it was
started with (its deadlines are stored with it); the supervisor's tick interval applies from
its next pass.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from relaybox.clock import SYSTEM, Clock
from relaybox.config import Config, TasksConfig, load_config
from relaybox.errors import ConfigError
from relaybox.worker.service import Service

log = logging.getLogger("relaybox.tasks")


class LiveSettings:
    """The current ``[tasks]`` settings of one process."""

    def __init__(self, config: Config, path: str | os.PathLike[str] | None = None) -> None:
        self.current: TasksConfig = config.tasks
        source = config.source if path is None else str(path)
        self.path: Path | None = None if source.startswith("(") else Path(source)
        self.reloads = 0  # successful reloads (tests and health read it)
        self._stamp = self._file_stamp()

    def reload(self) -> bool:
        """Read the file again; apply ``[tasks]`` if valid. Never raises."""
        if self.path is None:
            log.warning("settings reload ignored: this process has no config file")
            return False
        self._stamp = self._file_stamp()
        try:
            config = load_config(self.path)
        except ConfigError as error:
            log.error("settings reload refused, old settings stay: %s", error)
            return False
        if config.tasks != self.current:
            log.info("task contract defaults reloaded from %s", self.path)
        self.current = config.tasks
        self.reloads += 1
        return True

    def reload_if_changed(self) -> bool:
        """Reload when the file's size or modification time moved since the last read."""
        if self.path is None or self._file_stamp() == self._stamp:
            return False
        return self.reload()

    def watch_service(self, every: float = 1.0, clock: Clock = SYSTEM) -> Service:
        async def body() -> None:
            self.reload_if_changed()

        return Service("settings-watch", body, every=every, run_first=False, clock=clock)

    def _file_stamp(self) -> tuple[int, int] | None:
        if self.path is None:
            return None
        try:
            stat = self.path.stat()
        except OSError:
            return None
        return (stat.st_mtime_ns, stat.st_size)
