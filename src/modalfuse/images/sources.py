"""Image sources for ingest: a local path under allowed roots, an http(s) URL, or inline base64.

Every source ends in `load_image` (byte cap, pixel cap read from the header, format allow-list,
verify-then-load, RGB). URL fetching refuses loopback, private, link-local, multicast, reserved
and cloud-metadata addresses unless a setting allows them, checks every address a name resolves
to, on every redirect, and connects to the address it checked (so a DNS answer that changes
between the check and the connect cannot slip through).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import ipaddress
import socket
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal
from urllib.parse import urljoin, urlsplit

import httpx
from PIL import Image

from modalfuse.errors import ImageTooLarge, InvalidImage, TransientError
from modalfuse.onnx_models.runtime.image import load_image
from modalfuse.settings import Settings

Kind = Literal["url", "data", "path"]
METADATA_HOSTS = frozenset({"metadata.google.internal", "metadata", "instance-data"})


class ImageFetchError(TransientError):
    """An image fetch timed out or the server answered 429/5xx: worth retrying later."""


def source_kind(source: str) -> Kind:
    lowered = source[:16].lower()
    if lowered.startswith(("http://", "https://")):
        return "url"
    if lowered.startswith(("data:", "base64:")):
        return "data"
    return "path"


def decode_inline(source: str, *, max_bytes: int, field: str) -> bytes:
    """`data:image/...;base64,...` or `base64:...` to bytes, refusing oversize before decoding."""
    if source.lower().startswith("data:"):
        header, sep, payload = source.partition(",")
        if not sep or ";base64" not in header.lower():
            raise InvalidImage(
                "data URI must be base64-encoded (data:image/...;base64,...)", field=field
            )
    else:
        payload = source[len("base64:") :]
    if len(payload) * 3 // 4 > max_bytes:
        raise ImageTooLarge(f"inline image exceeds the {max_bytes}-byte cap", field=field)
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as e:
        raise InvalidImage(f"not valid base64: {e}", field=field) from e


def confined_path(source: str, roots: Sequence[Path], *, field: str) -> Path:
    """The real path of `source` if it lies under one of `roots` (after resolving symlinks)."""
    path = Path(source)
    if not path.is_absolute():
        raise InvalidImage(
            f"relative image path {source!r}: the producer resolves paths", field=field
        )
    try:
        real = path.resolve(strict=True)
    except (OSError, RuntimeError) as e:
        raise InvalidImage(
            f"image file {source!r} does not exist or is unreadable", field=field
        ) from e
    for root in roots:
        if real.is_relative_to(root.resolve()):
            return real
    shown = f"{source!r}" if str(real) == source else f"{source!r} (a link to {str(real)!r})"
    raise InvalidImage(
        f"{shown} is outside the allowed image roots (MODALFUSE_IMAGE_ROOTS): a link is "
        "followed only when its target lies inside a root",
        field=field,
    )


def linked_image_folders(paths: Iterable[str], inside: Path) -> set[Path]:
    """The real folders of local image paths that lie, as written, inside `inside` but resolve
    (through a symlink) to somewhere else. `ingest FILE` and `eval DATASET` add them as roots,
    since the operator put those links in the dataset; a message from the queue never widens
    the roots."""
    base = inside.resolve()
    folders: set[Path] = set()
    for value in paths:
        if source_kind(value) != "path":
            continue
        path = Path(value) if Path(value).is_absolute() else base / value
        if not path.absolute().is_relative_to(base):
            continue
        with contextlib.suppress(OSError, RuntimeError):
            real = path.resolve(strict=True)
            if not real.is_relative_to(base):
                folders.add(real.parent)
    return folders


def address_allowed(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or (isinstance(ip, ipaddress.IPv4Address) and ip in ipaddress.ip_network("100.64.0.0/10"))
    )


def checked_address(host: str, port: int, *, allow_private: bool, field: str) -> str:
    """Resolve `host` and return an address to connect to; refuse if any answer is internal."""
    if host.lower().rstrip(".") in METADATA_HOSTS and not allow_private:
        raise InvalidImage(f"host {host!r} is a cloud metadata endpoint", field=field)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise InvalidImage(f"cannot resolve {host!r}: {e.strerror}", field=field) from e
    addresses = sorted({str(info[4][0]) for info in infos})
    if not allow_private:
        refused = [a for a in addresses if not address_allowed(a)]
        if refused:
            raise InvalidImage(
                f"{host!r} resolves to a non-public address ({', '.join(refused)}); "
                "set MODALFUSE_IMAGE_ALLOW_PRIVATE_ADDRESSES to allow it",
                field=field,
            )
    return addresses[0]


def fetch_url(url: str, *, settings: Settings, client: httpx.Client, field: str) -> bytes:
    """GET an image with timeouts, a redirect cap and a byte cap, checking every hop."""
    for _hop in range(settings.image_max_redirects + 1):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidImage(f"unsupported image URL {url!r}", field=field)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        address = checked_address(
            parts.hostname, port, allow_private=settings.image_allow_private_addresses, field=field
        )
        host_for_url = f"[{address}]" if ":" in address else address
        pinned = parts._replace(netloc=f"{host_for_url}:{port}").geturl()
        headers = {"Host": parts.netloc.rsplit("@", 1)[-1], "Accept": "image/*"}
        try:
            with client.stream(
                "GET", pinned, headers=headers, extensions={"sni_hostname": parts.hostname}
            ) as response:
                if response.is_redirect:
                    location = response.headers.get("location")
                    if not location:
                        raise InvalidImage(f"redirect without a Location from {url!r}", field=field)
                    url = urljoin(url, location)
                    continue
                if response.status_code == 429 or response.status_code >= 500:
                    raise ImageFetchError(f"{field}: {url!r} answered {response.status_code}")
                if response.status_code != 200:
                    raise InvalidImage(f"{url!r} answered {response.status_code}", field=field)
                data = bytearray()
                for chunk in response.iter_bytes():
                    data += chunk
                    if len(data) > settings.max_image_bytes:
                        raise InvalidImage(
                            f"{url!r} is larger than the {settings.max_image_bytes}-byte cap",
                            field=field,
                        )
                return bytes(data)
        except httpx.TimeoutException as e:
            raise ImageFetchError(
                f"{field}: fetching {url!r} timed out ({type(e).__name__})"
            ) from e
        except httpx.TransportError as e:
            raise ImageFetchError(f"{field}: fetching {url!r} failed: {e}") from e
    raise InvalidImage(
        f"more than {settings.image_max_redirects} redirects from {url!r}", field=field
    )


def http_client(settings: Settings) -> httpx.Client:
    timeout = httpx.Timeout(settings.image_read_timeout_s, connect=settings.image_connect_timeout_s)
    # Redirects are followed by hand so that every hop's address is checked.
    return httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False)


def read_source(
    source: str,
    *,
    settings: Settings,
    roots: Sequence[Path],
    client: httpx.Client,
    field: str = "image",
) -> bytes:
    """The encoded bytes behind an image reference (path under the roots, URL, data URI)."""
    kind = source_kind(source)
    if kind == "url":
        return fetch_url(source, settings=settings, client=client, field=field)
    if kind == "data":
        return decode_inline(source, max_bytes=settings.max_image_bytes, field=field)
    path = confined_path(source, roots, field=field)
    try:
        size = path.stat().st_size
        if size > settings.max_image_bytes:
            raise InvalidImage(
                f"{size} bytes exceeds the {settings.max_image_bytes}-byte cap", field=field
            )
        return path.read_bytes()
    except OSError as e:
        raise InvalidImage(f"cannot read {path}: {e.strerror or e}", field=field) from e


def load_source(
    source: str,
    *,
    settings: Settings,
    roots: Sequence[Path],
    client: httpx.Client,
    field: str = "image",
) -> Image.Image:
    data = read_source(source, settings=settings, roots=roots, client=client, field=field)
    return load_image(
        data, max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels, field=field
    )
