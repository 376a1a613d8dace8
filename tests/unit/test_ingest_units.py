"""Ingest pieces that need no broker: messages, image sources, the producer's line handling."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pytest
from PIL import Image

from modalfuse.errors import InvalidDocument, InvalidImage
from modalfuse.images import sources as images
from modalfuse.ingest.messages import IngestMessage, parse_message
from modalfuse.ingest.pipeline import backoff
from modalfuse.ingest.producer import batched, to_item
from modalfuse.settings import Settings


def png_bytes(size: tuple[int, int] = (8, 8)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 10, 10)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize(
    ("raw", "field", "reason"),
    [
        ("{not json", "message", "not JSON"),
        ("[1, 2]", "message", "expected a JSON object, got list"),
        ({"index": "products", "fields": {}}, "id", "Field required"),
        ({"index": "Bad Name", "id": "1"}, "index", "should match pattern"),
        ({"index": "p", "id": "1", "op": "merge"}, "op", "'upsert' or 'delete'"),
        (
            {"index": "p", "id": "1", "op": "delete", "fields": {"title": "x"}},
            "fields",
            "a delete carries no fields",
        ),
        ({"index": "p", "id": "a\nb"}, "id", "control characters"),
        ({"index": "p", "id": "1", "version": -1}, "version", "greater than or equal to 0"),
        ({"index": "p", "id": "1", "colour": "red"}, "colour", "Extra inputs are not permitted"),
        ({"index": "p", "id": "x" * 513}, "id", "at most 512 characters"),
    ],
)
def test_bad_messages_name_the_field(raw: object, field: str, reason: str) -> None:
    with pytest.raises(InvalidDocument) as info:
        parse_message(raw, max_bytes=10_000)
    assert info.value.field == field
    assert reason in str(info.value)


def test_messages_parse_and_stamp_a_version() -> None:
    msg = parse_message(
        '{"index": "products", "id": "7", "fields": {"title": "t"}}', max_bytes=1000
    )
    assert (msg.op, msg.index, msg.id, msg.fields) == ("upsert", "products", "7", {"title": "t"})
    assert msg.version > 1_700_000_000 * 10**9  # nanoseconds since the epoch
    explicit = parse_message(
        {"index": "p", "id": "7", "version": 3, "op": "delete"}, max_bytes=1000
    )
    assert explicit.version == 3 and explicit.fields == {}
    with pytest.raises(InvalidDocument, match="over the 50-byte cap"):
        parse_message(
            json.dumps({"index": "p", "id": "1", "fields": {"title": "x" * 100}}), max_bytes=50
        )
    assert IngestMessage(index="p", id="1").format == 1


def test_source_kinds_and_inline_images() -> None:
    assert images.source_kind("https://x/y.jpg") == "url"
    assert images.source_kind("HTTP://x") == "url"
    assert images.source_kind("data:image/png;base64,AAAA") == "data"
    assert images.source_kind("/tmp/a.jpg") == "path"
    data = png_bytes()
    uri = "data:image/png;base64," + base64.b64encode(data).decode()
    assert images.decode_inline(uri, max_bytes=10_000, field="f") == data
    assert (
        images.decode_inline(
            "base64:" + base64.b64encode(data).decode(), max_bytes=10_000, field="f"
        )
        == data
    )
    with pytest.raises(InvalidImage, match="not valid base64"):
        images.decode_inline("data:image/png;base64,@@@@", max_bytes=10_000, field="f")
    with pytest.raises(InvalidImage, match="must be base64"):
        images.decode_inline("data:image/png,rawbytes", max_bytes=10_000, field="f")
    with pytest.raises(InvalidImage, match="exceeds the 10-byte cap"):
        images.decode_inline(uri, max_bytes=10, field="f")


def test_paths_are_confined_to_roots(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "ok.png").write_bytes(png_bytes())
    secret = tmp_path / "secret.png"
    secret.write_bytes(png_bytes())
    (root / "link.png").symlink_to(secret)
    assert (
        images.confined_path(str(root / "ok.png"), [root], field="f") == (root / "ok.png").resolve()
    )
    for escape in (str(root / ".." / "secret.png"), str(root / "link.png")):
        with pytest.raises(InvalidImage, match="outside the allowed image roots"):
            images.confined_path(escape, [root], field="fields.image")
    with pytest.raises(InvalidImage, match="relative image path"):
        images.confined_path("ok.png", [root], field="f")
    with pytest.raises(InvalidImage, match="does not exist"):
        images.confined_path(str(root / "missing.png"), [root], field="f")


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("192.168.0.1", False),
        ("172.16.5.5", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("0.0.0.0", False),
        ("::1", False),
        ("fe80::1", False),
        ("fd00::1", False),
        ("::ffff:127.0.0.1", False),
        ("8.8.8.8", True),
        ("2606:4700:4700::1111", True),
    ],
)
def test_address_policy(address: str, allowed: bool) -> None:
    assert images.address_allowed(address) is allowed


def test_internal_hosts_are_refused_before_connecting() -> None:
    for host in ("127.0.0.1", "localhost", "169.254.169.254", "metadata.google.internal"):
        with pytest.raises(
            InvalidImage, match=r"non-public address|metadata endpoint|cannot resolve"
        ):
            images.checked_address(host, 80, allow_private=False, field="fields.image")
    assert images.checked_address("127.0.0.1", 80, allow_private=True, field="f") == "127.0.0.1"


def test_producer_turns_bare_documents_into_upserts(tmp_path: Path) -> None:
    item = to_item(
        {"_id": 12, "title": "Red dress", "image": "images/12.jpg", "text": "summer"},
        index="shop",
        base_dir=tmp_path,
        field_map={"_id": "id", "text": "description"},
        image_fields=["image"],
        version=5,
    )
    assert item == {
        "op": "upsert",
        "index": "shop",
        "id": "12",
        "version": 5,
        "fields": {
            "title": "Red dress",
            "image": str(tmp_path / "images/12.jpg"),
            "description": "summer",
        },
    }
    full = to_item(
        {"op": "delete", "id": "3", "version": 9},
        index="shop",
        base_dir=None,
        field_map={},
        image_fields=[],
        version=5,
    )
    assert full == {"index": "shop", "version": 9, "op": "delete", "id": "3"}
    url = to_item(
        {"id": "1", "image": "https://x/y.jpg"},
        index="s",
        base_dir=tmp_path,
        field_map={},
        image_fields=["image"],
        version=1,
    )
    assert url["fields"]["image"] == "https://x/y.jpg"
    raw = to_item("not json", index="s", base_dir=None, field_map={}, image_fields=[], version=1)
    assert raw == {"unparsed": "not json", "index": "s"}
    assert [len(b) for b in batched(range(70), 32)] == [32, 32, 6]


def test_backoff_grows_with_jitter_and_a_cap() -> None:
    settings = Settings(retry_backoff_s=2.0, retry_backoff_max_s=20.0)
    for retries, (low, high) in {0: (1, 2), 1: (2, 4), 2: (4, 8), 10: (10, 20)}.items():
        delays = [backoff(settings, retries) for _ in range(200)]
        assert low <= min(delays) and max(delays) <= high
        assert len(set(delays)) > 100  # jittered, not one fixed delay
