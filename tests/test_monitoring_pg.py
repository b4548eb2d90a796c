"""The web console's /readyz and /metrics on PostgreSQL: 503 and `bot_store_up 0` while the server is
stopped, ready again once it is back (its own throwaway server: the session's is shared)."""
import tempfile
import time

import pytest
from starlette.testclient import TestClient

from bot.settings import load_settings
from pg_support import PG_MISSING_REASON, start_postgres
from test_monitoring import samples, value

pytestmark = pytest.mark.skipif(PG_MISSING_REASON is not None, reason=PG_MISSING_REASON or "")


def test_console_readiness_follows_the_postgresql_server(tmp_path):
    from bot.web.app import create_app

    server = start_postgres(tempfile.gettempdir())  # pytest's tmp dirs are not reachable by the server's user
    try:
        settings = load_settings(data_dir=tmp_path / "data", env={
            "BOT_DATABASE_URL": server.url, "BOT_KEY_FILE": str(tmp_path / "k"), "BOT_ACCOUNT": "console"})
        c = TestClient(create_app(settings))
        r = c.get("/readyz")
        assert r.status_code == 200 and r.json()["checks"] == {"store": "ok", "knowledge": "ok"}
        m = samples(c.get("/metrics").text)
        assert value(m, "bot_store_up") == 1 and value(m, "bot_appeals_by_status", status="ready") == 0

        server.pg_ctl("stop", "-m", "fast", "-w", "-t", "30", timeout=40)
        started = time.monotonic()
        r = c.get("/readyz")
        assert r.status_code == 503 and r.json() == {"ready": False,
                                                     "checks": {"store": "unreachable", "knowledge": "ok"}}
        assert time.monotonic() - started < 10  # the probe never waits for the pool's long timeout
        assert c.get("/healthz").status_code == 200
        assert value(samples(c.get("/metrics").text), "bot_store_up") == 0

        proc = server.pg_ctl("start", "-w", "-t", "60", "-l", str(server.log_path), "-o", f"-c port={server.port}")
        assert proc.returncode == 0, proc.stderr
        deadline = time.monotonic() + 60
        while (r := c.get("/readyz")).status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.5)  # the pool reconnects in the background
        assert r.status_code == 200
        assert value(samples(c.get("/metrics").text), "bot_store_up") == 1
    finally:
        server.stop()
