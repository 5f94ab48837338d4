"""Strict JSON values: what relaybox hashes or stores must be plain JSON, nothing Python-only.

Ordinary Python values are first converted to JSON by one documented rule (:func:`to_json`;
``docs/steps.md`` has the table), so an intent or a step result may hold them:

===========================  =============================================================
``datetime`` (aware)         ISO 8601 text in UTC with ``Z``: ``"2026-11-29T16:12:00Z"``
``datetime`` (naive)         ISO 8601 text, no zone: ``"2026-11-29T16:12:00"``
``date`` / ``time``          ISO 8601 text: ``"2026-11-29"``, ``"16:12:00"``
``Decimal``                  a JSON number (exact in the hash; stored as int or float)
``UUID``                     its hyphenated lower-case text
``Enum`` member              its ``value``, converted by the same rule
dataclass instance           an object of all its fields, converted by the same rule
pydantic model               ``model.model_dump(mode="json")``
tuple                        an array
===========================  =============================================================

Sets, bytes and other objects are still refused (they have no single JSON form). A replay
returns the converted JSON, never the original Python type: a ``datetime`` comes back as its
text, a dataclass as a dict. Conversion only touches values that were refused before, so the
hash of every intent that was valid before is unchanged.

Two encoders share one validator:

* :func:`dumps` writes a value for storage (compact, keys sorted) and refuses anything
  ``json.dumps`` would silently bend: NaN and infinities, non-string keys (``{1: "a"}`` would
  come back as ``{"1": "a"}``), sets, bytes, arbitrary objects, lone surrogates.
* :func:`canonical` writes the one text that every equal value maps to, for hashing: keys sorted,
  no whitespace, and numbers normalised so that ``1``, ``1.0``, ``Decimal("1.00")`` and ``1e0``
  are written the same way (ECMAScript-style layout, as in RFC 8785). A non-integral float
  stands for its shortest round-trip decimal (``0.1`` and ``Decimal("0.1")`` agree, as they
  would after a JSON round trip).

Errors are :class:`NotJSON` with the path of the offending value (``args.items[2]``), so a
caller can say exactly what to fix.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import uuid
from collections.abc import Mapping
from decimal import Decimal
from enum import Enum
from typing import Any

MAX_DEPTH = 64  # deeper nesting is almost surely a cycle or a mistake; refuse it clearly


class NotJSON(ValueError):
    """A value is not plain JSON (the message names where and why)."""


def check(value: Any, where: str = "value", *, allow_decimal: bool = False) -> None:
    """Raise :class:`NotJSON` unless ``value`` is plain JSON (no conversion)."""
    _walk(value, where, 0, allow_decimal, None)


def to_json(value: Any, where: str = "value") -> Any:
    """``value`` as plain JSON (dicts, lists, str, int, float, bool, None), by the rule in the
    module docstring; raise :class:`NotJSON` naming the path of a value without a JSON form.

    >>> to_json({"at": dt.date(2026, 11, 29), "id": uuid.UUID(int=1)})
    {'at': '2026-11-29', 'id': '00000000-0000-0000-0000-000000000001'}
    """
    plain = _plain(value, where, 0, exact=False)
    check(plain, where, allow_decimal=True)  # only a non-finite Decimal is left: refused
    return plain


def dumps(value: Any, where: str = "value") -> str:
    """Convert (:func:`to_json`), validate, then encode compactly with sorted keys (storage)."""
    plain = to_json(value, where)
    return json.dumps(plain, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def canonical(value: Any, where: str = "value") -> str:
    """The canonical JSON text of ``value``: equal values give identical text."""
    out: list[str] = []
    _walk(_plain(value, where, 0, exact=True), where, 0, True, out)
    return "".join(out)


def _plain(value: Any, where: str, depth: int, exact: bool) -> Any:
    """Convert ordinary Python values to JSON-shaped ones; leave anything else for _walk to
    judge (so its error messages stay the same). ``exact`` keeps a Decimal for the hash."""
    if depth > MAX_DEPTH:
        raise NotJSON(f"{where} is nested more than {MAX_DEPTH} levels deep (a cycle?)")
    if isinstance(value, Enum):
        return _plain(value.value, where, depth + 1, exact)
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, dt.datetime):
        if value.utcoffset() is None:
            return value.isoformat()
        utc = value.astimezone(dt.UTC).replace(tzinfo=None)
        return utc.isoformat() + "Z"
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, Decimal):
        if exact or not value.is_finite():
            return value  # _walk hashes it exactly, or refuses a non-finite one by name
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, list | tuple):
        return [_plain(item, f"{where}[{i}]", depth + 1, exact) for i, item in enumerate(value)]
    if isinstance(value, Mapping):
        return {
            key: _plain(item, f"{where}.{key}" if isinstance(key, str) else where, depth + 1, exact)
            for key, item in value.items()
        }
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: _plain(getattr(value, f.name), f"{where}.{f.name}", depth + 1, exact)
            for f in dataclasses.fields(value)
        }
    dump = getattr(value, "model_dump", None)
    if callable(dump) and hasattr(type(value), "model_fields"):  # a pydantic v2 model
        return _plain(dump(mode="json"), where, depth + 1, exact)
    return value


def _walk(value: Any, where: str, depth: int, allow_decimal: bool, out: list[str] | None) -> None:
    if depth > MAX_DEPTH:
        raise NotJSON(f"{where} is nested more than {MAX_DEPTH} levels deep (a cycle?)")
    if value is None or isinstance(value, bool):
        if out is not None:
            out.append("null" if value is None else "true" if value else "false")
    elif isinstance(value, str):
        _check_text(value, where)
        if out is not None:
            out.append(json.dumps(value, ensure_ascii=False))
    elif isinstance(value, int | float) or (allow_decimal and isinstance(value, Decimal)):
        text = _number(value, where)
        if out is not None:
            out.append(text)
    elif isinstance(value, list | tuple):
        if out is not None:
            out.append("[")
        for index, item in enumerate(value):
            if out is not None and index:
                out.append(",")
            _walk(item, f"{where}[{index}]", depth + 1, allow_decimal, out)
        if out is not None:
            out.append("]")
    elif isinstance(value, Mapping):
        for key in value:
            if not isinstance(key, str):
                raise NotJSON(
                    f"{where} has a key {key!r} of type {type(key).__name__};"
                    " JSON object keys must be strings"
                )
            _check_text(key, f"{where} key {key[:40]!r}")
        if out is not None:
            out.append("{")
        for index, key in enumerate(sorted(value)):
            if out is not None:
                out.append(("," if index else "") + json.dumps(key, ensure_ascii=False) + ":")
            _walk(value[key], f"{where}.{key}", depth + 1, allow_decimal, out)
        if out is not None:
            out.append("}")
    else:
        raise NotJSON(
            f"{where} is a {type(value).__name__}, which is not a JSON value{_hint(value)}"
        )


def _hint(value: Any) -> str:
    if isinstance(value, set | frozenset):
        return " (sets have no order: pass a sorted list)"
    if isinstance(value, bytes | bytearray):
        return " (decode bytes to text first)"
    if isinstance(value, Decimal):
        return " (convert a Decimal to str or float)"
    return ""


def _check_text(text: str, where: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise NotJSON(
            f"{where} is not valid UTF-8 text (lone surrogate at position {error.start})"
        ) from None


def _number(value: float | Decimal, where: str) -> str:
    """Shortest canonical text of a finite number; equal numbers give the same text."""
    if isinstance(value, float):
        if not math.isfinite(value):
            raise NotJSON(f"{where} is {value!r}; JSON numbers must be finite")
        # An integral float is that integer (so 2**60 and float(2**60) agree); any other
        # float is the shortest decimal that reads back as it (so 0.1 is "0.1", as in JSON).
        exact = Decimal(int(value)) if value.is_integer() else Decimal(repr(value))
    elif isinstance(value, Decimal):
        if not value.is_finite():
            raise NotJSON(f"{where} is Decimal({str(value)!r}); JSON numbers must be finite")
        exact = value
    else:
        try:
            exact = Decimal(value)
        except ValueError as error:  # beyond the interpreter's integer-to-text limit
            raise NotJSON(f"{where} is an integer too large to encode: {error}") from None
    sign, digit_tuple, exponent = exact.as_tuple()
    assert isinstance(exponent, int)  # finite numbers only, checked above
    digits = "".join(map(str, digit_tuple)).lstrip("0")
    if not digits:
        return "0"  # 0, -0.0, 0E-5: all zero
    stripped = digits.rstrip("0")
    exponent += len(digits) - len(stripped)
    return ("-" if sign else "") + _layout(stripped, exponent)


def _layout(digits: str, exponent: int) -> str:
    """Place the decimal point as ECMAScript's Number#toString does."""
    point = len(digits) + exponent  # position of the decimal point from the left
    if exponent >= 0 and point <= 21:
        return digits + "0" * exponent
    if 0 < point <= 21:
        return digits[:point] + "." + digits[point:]
    if -6 < point <= 0:
        return "0." + "0" * -point + digits
    mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    power = point - 1
    return f"{mantissa}e{'+' if power > 0 else '-'}{abs(power)}"
