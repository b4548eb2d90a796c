"""`python -m bot run` with BOT_METRICS_PORT against the shipped gateway: /healthz, /readyz following
the gateway's login, /metrics after a conversation, and the reconnect counted when the gateway
restarts."""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from .conftest import free_port

pytestmark = pytest.mark.e2e

PROMPT = "人脸与公安网照片不一致，请确保是账户本人操作"


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def metric(port: int, name: str, **labels) -> float:
    for family in text_string_to_metric_families(get(port, "/metrics")[1]):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return s.value
    return 0.0


def wait_for(pred, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while True:
        got = pred()
        if got or time.monotonic() > deadline:
            return got
        time.sleep(0.3)


def test_run_serves_health_readiness_and_metrics(start_gateway, start_bot, e2e_tmp):
    gw = start_gateway()
    port = free_port()
    since = gw.mark()
    bot = start_bot(e2e_tmp / "data-metrics", gw.endpoint, extra_env={"BOT_METRICS_PORT": str(port)})
    bot.wait_connected(gw, since)
    bot.wait_log("logged in as")
    assert get(port, "/healthz")[0] == 200
    status, body = get(port, "/readyz")
    assert status == 200 and json.loads(body) == {
        "ready": True, "checks": {"store": "ok", "knowledge": "ok", "gateway": "ok"}}
    assert metric(port, "bot_gateway_logged_in") == 1

    since = gw.mark()
    gw.send("dm", text=PROMPT, **{"from": "dave"})
    assert gw.collect(gw.user("dave"), since)
    # every reply committed went out (a long one in several parts)
    assert wait_for(lambda: metric(port, "bot_sends_total", result="sent") >= metric(port, "bot_replies_total") >= 1)
    assert metric(port, "bot_messages_total", kind="text") == 1
    assert metric(port, "bot_matches_total", tier="confident") == 1
    assert metric(port, "bot_turn_seconds_count") == 1
    assert metric(port, "bot_outbox_pending", account="main") == 0
    assert metric(port, "bot_gateway_reconnects_total") == 0
    assert gw.user("dave") not in get(port, "/metrics")[1]

    # the gateway goes away: alive but not ready; back on its port: reconnected, ready again
    gw_port = gw.port
    gw.close()
    assert wait_for(lambda: get(port, "/readyz")[0] == 503)
    status, body = get(port, "/readyz")
    assert json.loads(body)["checks"]["gateway"] == "not logged in" and get(port, "/healthz")[0] == 200
    gw = start_gateway(gw_port)
    gw.wait(lambda e: e["event"] == "client_stream_open", timeout=60, since=0)
    assert wait_for(lambda: get(port, "/readyz")[0] == 200, timeout=60)
    assert metric(port, "bot_gateway_reconnects_total") == 1
    assert bot.stop() == 0
    assert "Traceback" not in bot.log()
