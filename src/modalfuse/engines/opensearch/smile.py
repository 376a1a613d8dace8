"""Bulk bodies in Smile, the binary JSON that OpenSearch's bulk API reads beside NDJSON.

A bulk request is mostly vectors. As JSON text every float32 is about ten characters that the
node parses back with a decimal-to-binary conversion, then stores and compresses as text in
`_source`; in Smile each one is five bytes holding its bits, so the node copies them, and the
body (and the stored source) is about half the size, and the nodes spend less CPU per written
document (measured in docs/opensearch.md, "Where the nodes' CPU goes"). Search responses stay
JSON: the node converts a Smile `_source` when it returns it.

No Python library of the format is maintained, so this writes the subset a document needs
(objects, arrays, strings, integers up to 64 bits, floats, booleans, null), as Jackson's
`SmileGenerator` does without shared-name references, and `SmileBulk` carries it through
opensearch-py's own `streaming_bulk` (its chunking and its 429 retries).
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Mapping
from typing import Any

import numpy as np

# ':)' '\n', then version 0 with no shared names or values and no raw binary.
HEADER = b":)\n\x00"
# Ends each action and each source in a bulk stream; a Smile value never contains it.
SEPARATOR = b"\xff"
CONTENT_TYPE = "application/smile"

_FLOAT32, _FLOAT64, _INT32, _INT64 = 0x28, 0x29, 0x24, 0x25
_NULL, _FALSE, _TRUE, _EMPTY = 0x21, 0x22, 0x23, 0x20
_START_ARRAY, _END_ARRAY, _START_OBJECT, _END_OBJECT = 0xF8, 0xF9, 0xFA, 0xFB
_END_STRING = 0xFC
_INT32_RANGE = range(-(2**31), 2**31)
_INT64_RANGE = range(-(2**63), 2**63)


def _seven_bit_groups(bits: int, count: int) -> bytes:
    """`bits` as `count` groups of 7 bits, most significant first (how Smile writes floats)."""
    return bytes((bits >> (7 * (count - 1 - k))) & 0x7F for k in range(count))


def _vint(unsigned: int, out: bytearray) -> None:
    """Smile's variable-length integer: 7-bit groups, the last one 6 bits with the high bit set."""
    last = 0x80 | (unsigned & 0x3F)
    unsigned >>= 6
    groups = []
    while unsigned:
        groups.append(unsigned & 0x7F)
        unsigned >>= 7
    out += bytes(reversed(groups))
    out.append(last)


@dataclasses.dataclass(frozen=True)
class _Tokens:
    """How one kind of string is written: a token per size range (the token holds the size
    minus the range's low end), for ASCII and for other UTF-8, else a long form ended by 0xFC."""

    ascii: tuple[tuple[int, int, int], ...]
    unicode: tuple[tuple[int, int, int], ...]
    long_ascii: int
    long_unicode: int


_NAMES = _Tokens(
    ascii=((0x80, 1, 64),), unicode=((0xC0, 2, 57),), long_ascii=0x34, long_unicode=0x34
)
_VALUES = _Tokens(
    ascii=((0x40, 1, 32), (0x60, 33, 64)),
    unicode=((0x80, 2, 33), (0xA0, 34, 65)),
    long_ascii=0xE0,
    long_unicode=0xE4,
)


def _string(text: str, tokens: _Tokens, out: bytearray) -> None:
    raw = text.encode("utf-8")
    size, ascii_only = len(raw), len(raw) == len(text)
    if size == 0:
        out.append(_EMPTY)
        return
    for token, low, high in tokens.ascii if ascii_only else tokens.unicode:
        if low <= size <= high:
            out.append(token + size - low)
            out += raw
            return
    out.append(tokens.long_ascii if ascii_only else tokens.long_unicode)
    out += raw
    out.append(_END_STRING)


def _integer(value: int, field: str, out: bytearray) -> None:
    if -16 <= value <= 15:
        out.append(0xC0 + ((value << 1) ^ (value >> 31)))
    elif value in _INT32_RANGE:
        out.append(_INT32)
        _vint(((value << 1) ^ (value >> 31)) & 0xFFFFFFFF, out)
    elif value in _INT64_RANGE:
        out.append(_INT64)
        _vint(((value << 1) ^ (value >> 63)) & 0xFFFFFFFFFFFFFFFF, out)
    else:
        raise TypeError(f"{field}: integer {value} does not fit in 64 bits")


def _float32_array(values: np.ndarray, out: bytearray) -> None:
    bits = np.ascontiguousarray(values, dtype=np.float32).reshape(-1).view(np.uint32)
    tokens = np.empty((len(bits), 6), dtype=np.uint8)
    tokens[:, 0] = _FLOAT32
    for k in range(5):
        tokens[:, 1 + k] = (bits >> (7 * (4 - k))) & 0x7F
    out.append(_START_ARRAY)
    out += tokens.tobytes()
    out.append(_END_ARRAY)


def _value(value: Any, field: str, out: bytearray) -> None:
    if value is None:
        out.append(_NULL)
    elif value is True or value is False:
        out.append(_TRUE if value else _FALSE)
    elif isinstance(value, int):
        _integer(value, field, out)
    elif isinstance(value, float):
        out.append(_FLOAT64)
        out += _seven_bit_groups(struct.unpack(">Q", struct.pack(">d", value))[0], 10)
    elif isinstance(value, str):
        _string(value, _VALUES, out)
    elif isinstance(value, Mapping):
        out.append(_START_OBJECT)
        for name, item in value.items():
            _string(str(name), _NAMES, out)
            _value(item, f"{field}.{name}" if field else str(name), out)
        out.append(_END_OBJECT)
    elif isinstance(value, np.ndarray) and value.dtype == np.float32 and value.ndim == 1:
        _float32_array(value, out)
    elif isinstance(value, (list, tuple, np.ndarray)):
        out.append(_START_ARRAY)
        for item in value:
            _value(item, field, out)
        out.append(_END_ARRAY)
    elif isinstance(value, np.generic):
        _value(value.item(), field, out)
    else:
        # Dates, decimals, UUIDs: as opensearch-py's JSON serializer would write them.
        from opensearchpy.serializer import JSONSerializer

        try:
            converted = JSONSerializer().default(value)
        except Exception as e:
            raise TypeError(f"{field or 'document'}: cannot write {type(value).__name__}") from e
        _value(converted, field, out)


def dumps(value: Any) -> bytes:
    """One Smile document: the header, then `value`."""
    out = bytearray(HEADER)
    _value(value, "", out)
    return bytes(out)


class _LatinSerializer:
    """What `streaming_bulk` calls to write each action and source: the Smile bytes, ended by
    the separator, as a latin-1 string (one character per byte), since it joins strings."""

    def dumps(self, data: Any) -> str:
        return (dumps(data) + SEPARATOR).decode("latin-1")


def body_from_joined(joined: str) -> bytes:
    """The bulk body from what `streaming_bulk` joined with newlines: each part already ends
    with the separator, so every separator-newline pair is the join and goes back to the
    separator alone (a Smile value never holds the separator byte)."""
    return joined.encode("latin-1").replace(SEPARATOR + b"\n", SEPARATOR)


class _Transport:
    def __init__(self, serializer: _LatinSerializer) -> None:
        self.serializer = serializer


class SmileBulk:
    """The client as `helpers.streaming_bulk` sees it, sending Smile bulk bodies: it keeps the
    helper's chunking and its retries of 429-rejected items, and answers in JSON."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.transport = _Transport(_LatinSerializer())

    def bulk(self, body: str, **params: Any) -> Any:
        return self._client.transport.perform_request(
            "POST",
            "/_bulk",
            params=params or None,
            headers={"content-type": CONTENT_TYPE, "accept": "application/json"},
            body=body_from_joined(body),
        )
