"""Typed transport options: a dataclass per transport, parsed from its ``[channels.x]`` table.

A transport declares the keys it adds to a channel table as a frozen dataclass; this module
turns the table's values into an instance, with the same strictness as the rest of
relaybox.toml: unknown keys, wrong types and values the dataclass's ``__post_init__`` rejects
(by raising ``ValueError`` whose message starts with the key: ``"url must be ..."``) are
one-line :class:`~relaybox.errors.ConfigError` messages naming the file and the key.

Supported field types: ``str``, ``int``, ``float``, ``bool``, ``dict[str, str]``,
``tuple[str, ...]`` and any of them ``| None``.

Secrets are never read from the file itself: a field whose name ends in ``_env`` names an
environment variable, read with :func:`secret_from_env` when the transport is built.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from typing import Any, TypeVar

from relaybox.errors import ConfigError

__all__ = ["option_names", "parse_options", "secret_from_env"]

OptionsT = TypeVar("OptionsT")


def option_names(kind: type[Any]) -> set[str]:
    """The keys an options dataclass accepts."""
    return {f.name for f in dataclasses.fields(kind)}


def parse_options(
    kind: type[OptionsT], values: dict[str, Any], prefix: str, source: str
) -> OptionsT:
    """Build ``kind`` from a TOML table; raise :class:`ConfigError` with one line if bad."""
    hints = typing.get_type_hints(kind)
    known = option_names(kind)
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(
            f"{source}: unknown key {prefix}{unknown[0]}; allowed: {', '.join(sorted(known))}"
        )
    checked = {
        key: _check(hints[key], value, f"{source}: {prefix}{key}") for key, value in values.items()
    }
    try:
        return kind(**checked)
    except ValueError as error:  # the message starts with the key: "url must be ..."
        raise ConfigError(f"{source}: {prefix}{error}") from None
    except TypeError as error:  # a required option is missing
        missing = [
            f.name
            for f in dataclasses.fields(kind)  # type: ignore[arg-type]
            if f.name not in checked
            and f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
        ]
        if missing:
            raise ConfigError(f"{source}: {prefix}{missing[0]} is required") from None
        raise ConfigError(f"{source}: {prefix.rstrip('.')}: {error}") from None


def _check(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        return _check(options[0], value, where)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false (got {value!r})")
        return value
    if hint is str:
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{where} must be a non-empty string (got {value!r})")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be a whole number (got {value!r})")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where} must be a number (got {value!r})")
        return float(value)
    if origin is dict:
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            raise ConfigError(f"{where} must be a table of strings")
        return dict(value)
    if origin is tuple:
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise ConfigError(f"{where} must be a list of non-empty strings")
        return tuple(value)
    raise ConfigError(f"{where}: unsupported option type {hint!r}")  # a transport's own bug


def secret_from_env(variable: str, what: str) -> str:
    """The value of environment variable ``variable``; a clear error if it is unset or empty."""
    value = os.environ.get(variable, "")
    if not value:
        raise ConfigError(f"{what}: environment variable {variable} is not set")
    return value
