"""JSON through CPython's C accelerator (`_json`) without importing the `json` package.

`import json` pulls in `re` (and with it `enum`, `functools`, ...), which costs a short-lived
CLI such as dockyard-runtime more than the rest of its start-up. The C scanner and encoder are
what `json` itself uses on CPython; this module drives them directly and falls back to `json`
where they are missing. Output matches `json.dumps(value, separators=(",", ":"))` (ASCII-safe).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

try:
    import _json
except ImportError:  # pragma: no cover - other Python implementations
    _json = None  # type: ignore[assignment]

_WHITESPACE = " \t\n\r"


class JSONError(ValueError):
    """Malformed JSON; the message names the position."""


def _constant(name: str) -> float:
    return {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}[name]


class _Context:
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = staticmethod(_constant)
    memo: dict[Any, Any] = {}


_scanner = _json.make_scanner(_Context()) if _json is not None else None


def _skip(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in _WHITESPACE:
        pos += 1
    return pos


def loads(data: str | bytes) -> Any:
    if _scanner is None:  # pragma: no cover
        import json

        return json.loads(data)
    text = data.decode("utf-8") if isinstance(data, (bytes, bytearray)) else data
    if text.startswith("\ufeff"):
        raise JSONError("unexpected UTF-8 byte order mark at char 0")
    pos = _skip(text, 0)
    try:
        value, end = _scanner(text, pos)
    except StopIteration as e:
        raise JSONError(f"expecting a value at char {e.value}") from None
    except (ValueError, SystemError):
        # The C scanner builds its error from json.decoder, which may not be loaded yet; malformed
        # input is rare, so let the json package parse it again and word the error.
        import json

        try:
            json.loads(text)
        except ValueError as e:
            raise JSONError(str(e)) from None
        raise
    end = _skip(text, end)
    if end != len(text):
        raise JSONError(f"extra data at char {end}")
    return value


def _float_repr(value: float) -> str:
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "Infinity" if value > 0 else "-Infinity"
    return float.__repr__(value)


def _unserialisable(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


_encoder = (_json.make_encoder(None, _unserialisable, _json.encode_basestring_ascii, None, ":", ",", False,
                               False, True)
            if _json is not None else None)


def dumps(value: Any) -> str:
    if _encoder is None:  # pragma: no cover
        import json

        return json.dumps(value, separators=(",", ":"))
    return "".join(_encoder(value, 0))
