"""JSON with JavaScript semantics.

Weft peers are JavaScript: they parse frames with ``JSON.parse`` and write
canonical manifests with ``JSON.stringify``.  To agree with them byte for byte
this module supplies the pieces where Python's defaults differ:

* :func:`loads` — decode a frame the way ``JSON.parse`` would (``1e400`` is a
  non-finite number, lone surrogate escapes are kept, ``NaN`` is not JSON),
  using orjson on the hot path and the standard library only when orjson
  refuses something JavaScript accepts;
* :func:`js_number` — ``Number.prototype.toString`` for finite numbers
  (``1e+21``, ``1.5``, ``-0`` → ``0``, integers past 2**53 rounded first);
* :func:`js_string` — ``JSON.stringify`` string escaping;
* :func:`js_keys` — ``Object.keys`` order (array-index keys first);
* :func:`utf16_key` — the sort key of ``Array.prototype.sort`` on strings;
* :func:`canonical_json` — keys sorted at every depth, JavaScript formatting;
* :func:`dumps` — compact frame encoding (orjson, with a JavaScript-compatible
  fallback for values orjson cannot write).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from .errors import InvalidJsonError

__all__ = [
    "canonical_json",
    "dumps",
    "is_finite_number",
    "is_json_value",
    "js_keys",
    "js_number",
    "js_string",
    "loads",
    "sorted_keys",
    "utf8_length",
    "utf16_key",
]

_MAX_SAFE = 2**53
# The smallest integer whose nearest double is Infinity (computed once: the hot path checks it).
_INT_OVERFLOWS_DOUBLE = 2**1024 - 2**970
_ARRAY_INDEX_LIMIT = 2**32 - 1
_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
}
_NEEDS_ESCAPE = re.compile('[\x00-\x1f"\\\\\ud800-\udfff]')


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


def _parse_int(digits: str) -> int | float:
    # Python refuses int() of more than ~4300 digits; JavaScript reads any
    # integer literal as the nearest double (Infinity past about 1.8e308).
    return int(digits) if len(digits) <= 4000 else float(digits)


def loads(data: str | bytes | bytearray | memoryview) -> Any:
    """Decode one JSON text as ``JSON.parse`` would.

    Raises :class:`InvalidJsonError` for anything ``JSON.parse`` rejects, for
    bytes that are not UTF-8, and for nesting deeper than this interpreter's
    recursion allows (about 1,000 levels; JavaScript allows more).
    """
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        pass  # orjson is stricter than JavaScript in a few places; ask the stdlib.
    if isinstance(data, str):
        text = data
    else:
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidJsonError("not UTF-8") from exc
    try:
        return json.loads(text, parse_constant=_reject_constant, parse_int=_parse_int)
    except (ValueError, RecursionError) as exc:
        raise InvalidJsonError(str(exc)) from exc


def is_finite_number(value: object) -> bool:
    """``typeof value === 'number' && Number.isFinite(value)`` for decoded JSON."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return abs(value) < _INT_OVERFLOWS_DOUBLE
    if isinstance(value, float):
        return math.isfinite(value)
    return False


def is_json_value(value: object) -> bool:
    """A value JSON can carry: finite numbers, string keys, any depth."""
    stack: list[object] = [value]
    while stack:
        item = stack.pop()
        if item is None or isinstance(item, (str, bool)):
            continue
        if isinstance(item, (int, float)):
            if not is_finite_number(item):
                return False
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            if not all(isinstance(key, str) for key in item):
                return False
            stack.extend(item.values())
        else:
            return False
    return True


def js_number(value: int | float) -> str:
    """Format a finite number as JavaScript's ``Number.prototype.toString``."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) < _MAX_SAFE:
        return str(value)
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{value!r} is not a finite number")
    if number == 0:
        return "0"
    sign = "-" if number < 0 else ""
    mantissa, _, exponent = repr(abs(number)).partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = (whole + fraction).lstrip("0")
    # value = 0.<digits> * 10**point
    point = len(whole) + int(exponent or 0) - (len(whole + fraction) - len(digits))
    digits = digits.rstrip("0")
    count = len(digits)
    if count <= point <= 21:
        text = digits + "0" * (point - count)
    elif 0 < point <= 21:
        text = f"{digits[:point]}.{digits[point:]}"
    elif -6 < point <= 0:
        text = "0." + "0" * -point + digits
    else:
        exp = point - 1
        exp_text = f"e+{exp}" if exp >= 0 else f"e-{-exp}"
        text = (digits if count == 1 else f"{digits[0]}.{digits[1:]}") + exp_text
    return sign + text


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    return _ESCAPES.get(char) or f"\\u{ord(char):04x}"


def js_string(value: str) -> str:
    """Quote a string exactly as ``JSON.stringify`` does."""
    return '"' + _NEEDS_ESCAPE.sub(_escape, value) + '"'


def _is_array_index(key: str) -> bool:
    return (
        key.isdigit()
        and key.isascii()
        and (key == "0" or key[0] != "0")
        and (int(key) < _ARRAY_INDEX_LIMIT)
    )


def js_keys(record: Mapping[str, Any]) -> list[str]:
    """Keys in ``Object.keys`` order: array indices ascending, then insertion order."""
    indices = [key for key in record if _is_array_index(key)]
    if not indices:
        return list(record)
    indices.sort(key=int)
    return indices + [key for key in record if not _is_array_index(key)]


def utf16_key(value: str) -> bytes:
    """Sort key giving JavaScript's default string order (UTF-16 code units)."""
    return value.encode("utf-16-be", "surrogatepass")


def utf8_length(value: str) -> int:
    """UTF-8 byte length as ``TextEncoder`` counts it (a lone surrogate is 3 bytes)."""
    return len(value.encode("utf-8", "surrogatepass"))


def sorted_keys(record: Mapping[str, Any]) -> list[str]:
    """Keys sorted as ``Object.keys(record).sort()`` in JavaScript."""
    return sorted(record, key=utf16_key)


def _stringify(value: Any, sort: bool, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(js_string(value))
    elif isinstance(value, (int, float)):
        out.append(js_number(value) if is_finite_number(value) else "null")
    elif isinstance(value, list):
        out.append("[")
        for index, item in enumerate(value):
            if index:
                out.append(",")
            _stringify(item, sort, out)
        out.append("]")
    elif isinstance(value, dict):
        out.append("{")
        keys: Iterable[str] = sorted_keys(value) if sort else js_keys(value)
        for index, key in enumerate(keys):
            if index:
                out.append(",")
            out.append(js_string(key))
            out.append(":")
            _stringify(value[key], sort, out)
        out.append("}")
    else:
        raise TypeError(f"{type(value).__name__} is not JSON")


def _orjson_agrees(value: Any) -> bool:
    """Whether orjson, keys sorted, writes ``value`` as :func:`canonical_json` does, provided
    its output is ASCII: only exact ``str``, ``bool``, ``None``, ``int`` below 2**53 (no
    floats: ``1.0`` and ``1e21`` differ), ``list``, and ``dict`` with ``str`` keys.

    With ASCII output every key is ASCII, where UTF-8 byte order (orjson's sort) is UTF-16
    order, and orjson escapes ASCII exactly as ``JSON.stringify`` does.
    """
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is str or kind is bool or item is None:
            continue
        if kind is int:
            if -_MAX_SAFE < item < _MAX_SAFE:
                continue
            return False
        if kind is list:
            stack.extend(item)
        elif kind is dict:
            for key in item:
                if type(key) is not str:
                    return False
            stack.extend(item.values())
        else:
            return False
    return True


def _canonical_json_reference(value: Any) -> str:
    out: list[str] = []
    _stringify(value, True, out)
    return "".join(out)


def canonical_json(value: Any) -> str:
    """``JSON.stringify`` with object keys sorted (UTF-16 order) at every depth.

    Plain ASCII values (the usual digest inputs) go through orjson, about ten times faster;
    anything else — floats, big integers, non-ASCII text — through the reference writer.
    """
    if _orjson_agrees(value):
        try:
            text = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
        except orjson.JSONEncodeError:  # nested deeper than orjson allows
            pass
        else:
            if text.isascii():
                return text.decode("ascii")
    return _canonical_json_reference(value)


def dumps(value: Any) -> bytes:
    """Encode a frame compactly as UTF-8 JSON."""
    try:
        return orjson.dumps(value)
    except (TypeError, orjson.JSONEncodeError):
        # Integers past 64 bits, lone surrogates: write them as JavaScript would.
        out: list[str] = []
        _stringify(value, False, out)
        return "".join(out).encode("utf-8")
