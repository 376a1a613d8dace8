"""Headless Chromium (the system's, driven by playwright), and the newcomer's check: after
`modalfuse demo`, a `modalfuse serve` started from another shell shows the products' photos."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx

from tests.cli_support import CLI
from tests.conftest import service_unavailable

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    service_unavailable(
        "no Chromium here (scripts/install-test-tools.sh installs Debian's chromium)"
    )


@contextlib.contextmanager
def launched() -> Iterator[Any]:
    executable = chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        service_unavailable("playwright is not installed (pip install '.[dev]')")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def served(env: dict[str, str]) -> Iterator[str]:
    """`modalfuse serve` in its own process, configured only by `env` (as a user's shell)."""
    port = free_port()
    proc = subprocess.Popen(
        [*CLI, "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            time.sleep(0.2)
        else:
            raise AssertionError("modalfuse serve did not become ready")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def check_served_images(env: dict[str, str]) -> None:
    """The API answers image URLs that load, and the page shows the photos in Chromium."""
    with served(env) as url:
        body = httpx.post(f"{url}/search", json={"text": "red summer dress", "size": 6}).json()
        links = [h["fields"]["image"] for h in body["hits"]]
        assert links and all(link.startswith("/images/") for link in links), links
        answer = httpx.get(url + links[0])
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"] == "image/jpeg"
        with launched() as browser:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(url + "/")
            page.fill("#q", "red summer dress")
            page.click("#search")
            page.wait_for_selector("#results .card")
            page.wait_for_function(
                "[...document.querySelectorAll('#results .thumb')].slice(0, 6)"
                ".every(i => i.complete)"
            )
            widths = page.eval_on_selector_all(
                "#results .thumb", "imgs => imgs.slice(0, 6).map(i => i.naturalWidth)"
            )
            assert len(widths) == 6 and all(w > 0 for w in widths), widths
