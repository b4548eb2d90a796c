"""Real-browser tests: Playwright (sync API) driving Debian's Chromium.

Playwright's own browser download is not reachable here, so ``playwright install``
is never run: the browser is Debian's ``chromium`` package (``make browser``,
a prerequisite of ``make test``), launched through ``executable_path``.

Usage in a test module::

    import pytest
    from browser_support import CHROMIUM_MISSING_REASON, launch_browser, serve_directory

    pytestmark = pytest.mark.skipif(CHROMIUM_MISSING_REASON is not None,
                                    reason=CHROMIUM_MISSING_REASON or "")

    def test_page(tmp_path):            # a plain ``def``, not ``async def``
        from playwright.sync_api import sync_playwright
        with serve_directory(tmp_path) as url, sync_playwright() as pw:
            browser = launch_browser(pw)
            ...

The sync API must not be started while an asyncio loop runs in the same thread:
with ``asyncio_mode = "auto"`` a plain sync test (or sync fixture used only by sync
tests) is fine; from an ``async def`` test use ``playwright.async_api`` instead.
CJK text in screenshots needs a CJK font (``make fonts``: fonts-wqy-microhei),
otherwise Chinese renders as empty boxes.
"""
from __future__ import annotations

import asyncio
import contextlib
import functools
import http.server
import os
import threading
from pathlib import Path
from typing import Iterator

CHROMIUM_PATH = "/usr/bin/chromium"

#: Arguments for headless Chromium in a container, as root, on CI.
#: --no-sandbox: Chromium refuses to start as root with its sandbox (Playwright
#:   also adds it by default, since chromium_sandbox defaults to False).
#: --disable-dev-shm-usage: shared memory in /tmp instead of a possibly small /dev/shm.
#: --disable-gpu: no GPU here; software rendering.
LAUNCH_ARGS = ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"]


def _missing_reason() -> str | None:
    if not os.access(CHROMIUM_PATH, os.X_OK):
        return f"{CHROMIUM_PATH} not found: run `make browser` (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as exc:
        return f"playwright not importable ({exc}): pip install -e '.[test]'"
    return None


#: None when real-browser tests can run; else why not (for ``pytest.mark.skipif``).
CHROMIUM_MISSING_REASON: str | None = _missing_reason()


def launch_browser(playwright, **kwargs):
    """Launch Debian's Chromium headless from a started sync (or async) Playwright.

    ``playwright`` is what ``sync_playwright().start()`` / ``with sync_playwright() as pw``
    gives. Extra keyword arguments go to ``chromium.launch`` (``args`` are appended).
    """
    options = {
        "executable_path": CHROMIUM_PATH,
        "headless": True,
        "args": LAUNCH_ARGS + list(kwargs.pop("args", [])),
        "timeout": 60_000,
    }
    options.update(kwargs)
    return playwright.chromium.launch(**options)


def assert_no_running_loop() -> None:
    """Fail clearly if the sync API would be started inside a running event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise RuntimeError(
        "Playwright's sync API cannot run inside an asyncio event loop: "
        "use a plain `def` test, or playwright.async_api in an `async def` test"
    )


@contextlib.contextmanager
def serve_directory(directory: str | Path) -> Iterator[str]:
    """Serve ``directory`` over HTTP on 127.0.0.1 on a free port; yield its base URL."""

    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format, *args):  # noqa: A002 - stdlib signature
            pass

    handler = functools.partial(QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
