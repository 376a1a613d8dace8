"""The Smile writer, byte for byte against the format's specification (the node reading it back
is tests/integration/test_opensearch_bulk_format.py)."""

from __future__ import annotations

import datetime

import numpy as np
import pytest

from modalfuse.engines.opensearch.smile import (
    HEADER,
    SEPARATOR,
    SmileBulk,
    body_from_joined,
    dumps,
)


def body(value: object) -> bytes:
    out = dumps(value)
    assert out.startswith(HEADER)
    return out[len(HEADER) :]


def test_the_header_says_version_0_without_shared_names_or_values() -> None:
    assert HEADER == b":)\n\x00"


def test_literals_and_small_integers_are_one_token() -> None:
    assert body(None) == b"\x21" and body(False) == b"\x22" and body(True) == b"\x23"
    # -16..15, zigzag in the token's low five bits.
    assert [body(v) for v in (0, -1, 1, 15, -16)] == [b"\xc0", b"\xc1", b"\xc2", b"\xde", b"\xdf"]


def test_larger_integers_are_zigzag_variable_length() -> None:
    assert body(16) == b"\x24\xa0"  # zigzag 32: one group of 6 bits, high bit set
    assert body(100) == b"\x24\x03\x88"  # zigzag 200 = 3 << 6 | 8
    assert body(-100) == b"\x24\x03\x87"  # zigzag 199
    assert body(2**31) == b"\x25\x20\x00\x00\x00\x80"  # a long: zigzag 2**32
    assert body(np.int64(100)) == body(100)
    with pytest.raises(TypeError, match="price: integer 18446744073709551616 does not fit"):
        dumps({"price": 2**64})


def test_floats_are_their_bits_in_seven_bit_groups() -> None:
    # float32 1.0 = 0x3F800000: bits 31-28, then 27-21, ... (0011, 1111100, 0, 0, 0).
    assert body(np.array([1.0], dtype=np.float32)) == b"\xf8\x28\x03\x7c\x00\x00\x00\xf9"
    # float64 1.0 = 0x3FF0000000000000: ten groups, the first holding bit 63 alone.
    assert body(1.0) == b"\x29\x00\x3f\x78" + b"\x00" * 7
    assert body(np.float32(1.0)) == body(1.0)  # a scalar is written as the double it is


def test_strings_by_length_and_by_ascii() -> None:
    assert body("") == b"\x20"
    assert body("ab") == b"\x41ab"  # tiny ASCII: 0x40 + length - 1
    assert body("a" * 33) == b"\x60" + b"a" * 33  # short ASCII from 33 bytes
    assert body("é") == b"\x80\xc3\xa9"  # tiny Unicode: 0x80 + bytes - 2
    assert (
        body("连衣裙" * 4) == b"\xa2" + ("连衣裙" * 4).encode()
    )  # 36 bytes: short Unicode, 0xA0 + bytes - 34
    assert body("a" * 65) == b"\xe0" + b"a" * 65 + b"\xfc"  # long ASCII, ended by 0xFC
    assert body("连衣裙" * 8) == b"\xe4" + ("连衣裙" * 8).encode() + b"\xfc"


def test_objects_name_their_keys_and_arrays_nest() -> None:
    assert body({"a": 1}) == b"\xfa\x80a\xc2\xfb"
    assert body({"": [1, "x"]}) == b"\xfa\x20\xf8\xc2\x40x\xf9\xfb"
    assert body({"色": None}) == b"\xfa\xc1\xe8\x89\xb2\x21\xfb"  # short Unicode name
    long_name = "k" * 65
    assert body({long_name: True}) == b"\xfa\x34" + long_name.encode() + b"\xfc\x23\xfb"


def test_other_types_are_written_as_the_json_serializer_writes_them() -> None:
    assert body({"at": datetime.date(2026, 12, 4)}) == body({"at": "2026-12-04"})
    with pytest.raises(TypeError, match=r"tags\.x: cannot write object"):
        dumps({"tags": {"x": object()}})


def test_no_value_holds_the_separator_so_a_bulk_body_splits_exactly() -> None:
    rng = np.random.default_rng(7)
    docs = [
        {
            "title": "".join(chr(c) for c in rng.integers(32, 0x2FFF, 80)),
            "n": int(rng.integers(-(2**62), 2**62)),
            "v": rng.standard_normal(384).astype(np.float32),
            "p": float(rng.standard_normal()),
        }
        for _ in range(50)
    ]
    assert all(SEPARATOR not in dumps(d) for d in docs)
    # streaming_bulk joins what the serializer wrote with newlines; the body undoes the join.
    serializer = SmileBulk(client=None).transport.serializer
    parts = [serializer.dumps(x) for d in docs for x in ({"index": {"_id": "1"}}, d)]
    expected = b"".join(dumps(x) + SEPARATOR for d in docs for x in ({"index": {"_id": "1"}}, d))
    assert body_from_joined("\n".join(parts) + "\n") == expected
