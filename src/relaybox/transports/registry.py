"""Transports registered by name: built-ins, and third-party packages through entry points.

A transport is a :class:`TransportKind`: its name (the ``transport = "..."`` of a channel), a
typed options dataclass (the extra keys its ``[channels.x]`` table accepts), a ``build``
function, and a *preset* of the platform's limits (rates, text length) that the channel table
may override. ``config.py`` knows none of them: it asks this registry.

Where kinds come from:

* **Built-ins**: every module of the ``relaybox.transports`` package that defines a module-level
  ``TRANSPORT = TransportKind(...)``. Adding a built-in transport is adding one module (its SDK
  is imported inside ``build``, so an uninstalled extra costs nothing until a channel uses it).
* **Plugins**: an entry point in the ``relaybox.transports`` group whose name is the kind's
  name and whose object is a :class:`TransportKind`::

      # pyproject.toml of your package
      [project.entry-points."relaybox.transports"]
      carrier-pigeon = "relaybox_pigeon:TRANSPORT"

* **In code**: :func:`register_transport` (tests, applications that build their own).

See docs/platforms.md ("Writing a transport") and :mod:`relaybox.testing.contract` for the
behaviours every transport must show.
"""

from __future__ import annotations

import importlib
import pkgutil
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from relaybox.errors import ConfigError
from relaybox.transports.base import Transport

if TYPE_CHECKING:
    from relaybox.config import ChannelConfig, Config
    from relaybox.inbound.platforms.base import InboundEndpoint

__all__ = [
    "ENTRY_POINT_GROUP",
    "TransportKind",
    "build_transport",
    "build_transports",
    "get_kind",
    "known_kinds",
    "register_transport",
]

ENTRY_POINT_GROUP = "relaybox.transports"


@dataclass(frozen=True)
class NoOptions:
    """Options of a transport that has none."""


@dataclass(frozen=True)
class TransportKind:
    """What relaybox needs to know about one kind of transport.

    ``options``: a frozen dataclass; its fields are the keys this transport adds to a
    ``[channels.x]`` table (see :mod:`relaybox.transports.options`). ``build`` gets the whole
    :class:`~relaybox.config.ChannelConfig`, with the parsed options in ``channel.options``.
    ``preset``: defaults for the generic channel keys (``parts_per_second``,
    ``thread_parts_per_second``, ``group_parts_per_minute``, ``max_part_chars``,
    ``send_timeout_seconds``, ...), i.e. the platform's documented limits; a channel table
    overrides any of them. ``is_group``: tells a group chat from a one-to-one chat by its
    recipient, for ``group_parts_per_minute``. ``cost``: how many units of
    ``parts_per_second`` one part's text uses (SMS segments); one per part if unset.
    ``inbound``: builds the channel's inbound webhook endpoint (:mod:`relaybox.inbound.webhooks`).
    """

    name: str
    build: Callable[[ChannelConfig], Transport]
    options: type[Any] = NoOptions
    preset: Mapping[str, Any] = field(default_factory=dict)
    is_group: Callable[[str], bool] | None = None
    cost: Callable[[str], float] | None = None
    inbound: Callable[[ChannelConfig], InboundEndpoint] | None = None
    summary: str = ""


_lock = threading.Lock()
_kinds: dict[str, TransportKind] = {}
_builtins_loaded = False


def register_transport(kind: TransportKind, *, replace: bool = False) -> TransportKind:
    """Make ``kind`` available as ``transport = "<kind.name>"``; returns it (usable as a value).

    Registering a second kind under a taken name is an error unless ``replace`` is true.
    """
    if not kind.name or not kind.name.replace("-", "_").isidentifier():
        raise ValueError(f"transport name {kind.name!r} must be a word (letters, digits, - or _)")
    with _lock:
        existing = _kinds.get(kind.name)
        if existing is not None and existing is not kind and not replace:
            raise ValueError(f"a transport named {kind.name!r} is already registered")
        _kinds[kind.name] = kind
    return kind


def _load_builtins() -> None:
    global _builtins_loaded
    if _builtins_loaded:
        return
    import relaybox.transports as package

    for module in pkgutil.iter_modules(package.__path__):
        if module.name.startswith("_"):
            continue
        loaded = importlib.import_module(f"{package.__name__}.{module.name}")
        kind = getattr(loaded, "TRANSPORT", None)
        if isinstance(kind, TransportKind):
            with _lock:
                _kinds.setdefault(kind.name, kind)
    _builtins_loaded = True


def _plugin_names() -> list[str]:
    return [ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)]


def _load_plugin(name: str) -> TransportKind | None:
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name != name:
            continue
        try:
            kind = ep.load()
        except Exception as error:
            raise ConfigError(
                f"transport {name!r} (entry point {ep.value}) failed to load: "
                f"{type(error).__name__}: {error}"
            ) from error
        if not isinstance(kind, TransportKind) or kind.name != name:
            raise ConfigError(
                f"entry point {name!r} ({ep.value}) must be a TransportKind named {name!r}"
            )
        return register_transport(kind)
    return None


def known_kinds() -> list[str]:
    """Names of every transport a channel may use (plugins are listed, not loaded)."""
    _load_builtins()
    with _lock:
        names = set(_kinds)
    return sorted(names | set(_plugin_names()))


def get_kind(name: object) -> TransportKind:
    """The transport kind called ``name``; :class:`ConfigError` naming the known ones if none."""
    _load_builtins()
    if isinstance(name, str):
        with _lock:
            kind = _kinds.get(name)
        if kind is None:
            kind = _load_plugin(name)
        if kind is not None:
            return kind
    raise ConfigError(f"transport must be one of {', '.join(known_kinds())} (got {name!r})")


def build_transport(channel: ChannelConfig) -> Transport:
    """The transport for one configured channel."""
    return get_kind(channel.transport).build(channel)


def build_transports(config: Config) -> dict[str, Transport]:
    """One transport per configured channel."""
    return {name: build_transport(channel) for name, channel in config.channels.items()}
