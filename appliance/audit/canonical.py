"""RFC 8785 canonical JSON, fast for the values audit events hold.

The `rfc8785` package is the reference, but it is pure Python and costs a
tenth of a millisecond per event, a third of a durable append. For values
where the standard library's output is provably identical (ASCII keys,
strings without lone surrogates, integers within +-2^53, fractional floats
whose shortest form is plain decimal in both ECMAScript and Python), json
writes the bytes; anything else goes to `rfc8785`. A property test checks
that the two agree (tests/test_audit_canonical.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import rfc8785

_MAX_SAFE_INTEGER = 2**53 - 1
# json's C string encoder escapes exactly what RFC 8785 escapes (", \\ and
# control characters, the short forms where they exist) and nothing else.
encode_string: Callable[[str], str] = json.encoder.encode_basestring
_encoder = json.JSONEncoder(
    ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False
)
# JSONEncoder.encode builds its C encoder on every call; build it once.
_make_c_encoder = getattr(json.encoder, "c_make_encoder", None)
_c_encoder = (
    None
    if _make_c_encoder is None
    else _make_c_encoder(None, None, encode_string, None, ":", ",", True, False, False)
)


def _encode(value: Any) -> str:
    if _c_encoder is None:
        return _encoder.encode(value)
    return "".join(_c_encoder(value, 0))


def canonical_json(value: Any) -> bytes:
    """The RFC 8785 bytes of `value` (raises like `rfc8785.dumps` on bad input)."""
    if _plain(value):
        try:
            return _encode(value).encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: let the reference refuse it
            pass
    return rfc8785.dumps(value)


def _plain(value: Any) -> bool:
    """Whether json.dumps writes exactly what RFC 8785 requires for `value`."""
    kind = type(value)  # exact types: subclasses (enums) may print differently
    if kind is str or value is None or kind is bool:
        return True
    if kind is int:
        return bool(-_MAX_SAFE_INTEGER <= value <= _MAX_SAFE_INTEGER)
    if kind is float:
        # Both print the shortest round-trip digits; they agree on notation
        # only for non-integral values from 1e-4 up to 1e16.
        return not value.is_integer() and 1e-4 <= abs(value) < 1e16
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str or not key.isascii():
                return False
            if type(item) is not str and not _plain(item):
                return False
        return True
    if kind is list or kind is tuple:
        return all(_plain(item) for item in value)
    return False
