"""Metrics and health: /metrics parsed as Prometheus does after scripted conversations (a live
`python -m bot replay -` process with metrics_port, and the engine in-process), /healthz, /readyz
answering 503 when the store is gone, the web console's endpoints without login, and no personal
data in anything they say."""
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from bot import metrics
from bot.monitoring import Health
from conftest import ROOT
from driver import Driver, email_answers, run_appeal
from session_server import free_port

ID_NUMBER = "11010519491231002X"
MOBILE = "13800138000"
NAME = "欧阳娜娜"
PROMPT = "刷脸之后提示脸和公安网的照片不一致"  # confident
SUGGEST = "认证的人和大鱼号注册的主体不是同一个"  # suggest
NONE = "今天天气不错"  # none
ALLOWED_LABELS = {"kind": set(metrics.MESSAGE_KINDS), "tier": set(metrics.TIERS.values()),
                  "status": set(metrics.APPEAL_STATUSES), "result": {*metrics.SMTP_RESULTS, *metrics.IMAP_RESULTS,
                                                                     *metrics.SEND_RESULTS},
                  "account": {"main", "unassigned"}, "le": None}


def samples(text: str) -> dict[tuple, float]:
    """{(sample name, sorted labels...): value} of a Prometheus text exposition."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, *sorted(s.labels.items()))] = s.value
    return out


def value(parsed: dict, name: str, **labels) -> float:
    return parsed.get((name, *sorted(labels.items())), 0.0)


def assert_no_personal_data(text: str, *secrets: str) -> None:
    for secret in (ID_NUMBER, ID_NUMBER.lower(), MOBILE, NAME, *secrets):
        assert secret not in text
    assert not re.search(r"(?<![\d.])\d{15,}", text)  # nothing ID-number-like (counts, times, fractions)
    for family in text_string_to_metric_families(text):
        if not family.name.startswith("bot_"):
            continue  # process_*, python_*: the client library's own
        for s in family.samples:
            for k, v in s.labels.items():
                assert k in ALLOWED_LABELS, (s.name, k)
                assert ALLOWED_LABELS[k] is None or v in ALLOWED_LABELS[k], (s.name, k, v)


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


# -- a live replay process with metrics_port ---------------------------------------------------------
def test_replay_process_serves_metrics_health_and_readiness(tmp_path, media):
    port = free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("BOT_")},
           "BOT_KEY_FILE": str(tmp_path / "keys" / "k"), "BOT_APPEAL_EMAIL": "appeals@example.invalid",
           "BOT_METRICS_PORT": str(port)}
    proc = subprocess.Popen([sys.executable, "-m", "bot", "replay", "-", "--data-dir", str(tmp_path / "data")],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT, env=env)
    events = [
        {"id": "m1", "from": "u1", "text": PROMPT},
        {"id": "m2", "from": "u1", "text": "需要"},
        {"id": "m3", "from": "u1", "text": "没有"},  # the email route: its first item is asked
        {"id": "m4", "from": "u1", "text": f"我叫{NAME},身份证 {ID_NUMBER},手机 {MOBILE}"},
        {"id": "m5", "from": "u1", "image": str(media["front"])},
        {"id": "m1", "from": "u1", "text": PROMPT},  # a redelivery: not a message handled again
        {"room": "r1", "from": "u9", "text": PROMPT},  # not mentioned in a room: ignored
        {"id": "m6", "from": "u2", "text": SUGGEST},
        {"id": "m7", "from": "u3", "text": NONE},
        {"id": "last", "from": "u3", "text": "帮助"},
    ]
    try:
        for e in events:
            proc.stdin.write(json.dumps(e, ensure_ascii=False) + "\n")
        proc.stdin.flush()
        lines = []
        while not lines or json.loads(lines[-1])["reply_to"] != "last":
            line = proc.stdout.readline()
            assert line, proc.stderr.read()
            lines.append(line)
        deadline = time.monotonic() + 5
        while True:  # the replies of "last" may be several
            parsed = samples(get(f"http://127.0.0.1:{port}/metrics")[1])
            if value(parsed, "bot_sends_total", result="sent") == len(lines) or time.monotonic() > deadline:
                break
            lines.append(proc.stdout.readline())

        status, body = get(f"http://127.0.0.1:{port}/metrics")
        assert status == 200
        m = samples(body)
        assert value(m, "bot_messages_total", kind="text") == 7
        assert value(m, "bot_messages_total", kind="image") == 1
        assert value(m, "bot_turn_seconds_count") == 8
        assert 0 < value(m, "bot_turn_seconds_sum") < 8 * 30
        assert value(m, "bot_turn_seconds_bucket", le="+Inf") == 8
        assert value(m, "bot_matches_total", tier="confident") >= 1
        assert value(m, "bot_matches_total", tier="suggest") == 1
        assert value(m, "bot_matches_total", tier="none") >= 1
        assert value(m, "bot_replies_total") == len(lines) == value(m, "bot_sends_total", result="sent")
        assert value(m, "bot_outbox_pending", account="main") == 0  # replay sends each turn's replies at once
        assert value(m, "bot_conversations_active", account="main") == 2  # u1 mid-appeal, u2 choosing
        assert value(m, "bot_store_up") == 1
        assert_no_personal_data(body, "u1", "u2", "u9", "r1")

        status, body = get(f"http://127.0.0.1:{port}/healthz")
        assert status == 200 and json.loads(body)["status"] == "ok"
        status, body = get(f"http://127.0.0.1:{port}/readyz")
        assert status == 200 and json.loads(body) == {"ready": True, "checks": {"store": "ok", "knowledge": "ok"}}

        # The SQLite file moved away: the process's open connection would go on, but a restart
        # would not find the data: not ready; /healthz still answers; back in place: ready again.
        db = tmp_path / "data" / "bot.sqlite3"
        db.rename(tmp_path / "moved.sqlite3")
        try:
            status, body = get(f"http://127.0.0.1:{port}/readyz")
            assert status == 503 and json.loads(body)["checks"]["store"] == "unreachable"
            assert get(f"http://127.0.0.1:{port}/healthz")[0] == 200
            assert value(samples(get(f"http://127.0.0.1:{port}/metrics")[1]), "bot_store_up") == 0
        finally:
            (tmp_path / "moved.sqlite3").rename(db)
        assert get(f"http://127.0.0.1:{port}/readyz")[0] == 200
        assert get(f"http://127.0.0.1:{port}/other")[0] == 404
    finally:
        proc.stdin.close()
        assert proc.wait(60) == 0, proc.stderr.read()


def test_a_taken_metrics_port_is_a_warning_for_replay(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("BOT_")},
               "BOT_KEY_FILE": str(tmp_path / "k"), "BOT_METRICS_PORT": str(taken.getsockname()[1])}
        out = subprocess.run([sys.executable, "-m", "bot", "replay", "-", "--data-dir", str(tmp_path / "data")],
                             input=json.dumps({"from": "u1", "text": PROMPT}, ensure_ascii=False) + "\n",
                             capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert out.returncode == 0 and json.loads(out.stdout.splitlines()[0])["prompt_id"] == 2
    assert "cannot listen on 127.0.0.1" in out.stderr and "going on without them" in out.stderr


def test_run_refuses_to_start_on_a_taken_metrics_port(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        env = {**{k: v for k, v in os.environ.items() if not k.startswith(("BOT_", "WECHATY_"))},
               "BOT_KEY_FILE": str(tmp_path / "k"), "BOT_METRICS_PORT": str(taken.getsockname()[1]),
               "WECHATY_PUPPET_SERVICE_TOKEN": "t", "WECHATY_PUPPET_SERVICE_ENDPOINT": "127.0.0.1:9"}
        out = subprocess.run([sys.executable, "-m", "bot", "run", "--data-dir", str(tmp_path / "data")],
                             capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1].startswith("not starting: cannot listen on 127.0.0.1:")
    assert "Traceback" not in out.stderr


# -- the engine in-process ----------------------------------------------------------------------------
async def test_counts_of_a_whole_appeal_and_the_backlog_read_from_the_store(tmp_path, media):
    d = await Driver.open(tmp_path)
    health = Health(d.engine.store, lambda: True, accounts=["main"])
    try:
        before = samples((await health.exposition()).decode())
        final, _ = await run_appeal(d, email_answers(media), "没有")
        assert final["appeal_id"]
        await d.say(SUGGEST, user="u2")  # a choice: u2's conversation waits for an answer
        body = (await health.exposition()).decode()
        after = samples(body)

        def delta(name, **labels):
            return value(after, name, **labels) - value(before, name, **labels)

        unsent = d.engine.unsent()  # nothing was delivered: every reply waits in the outbox
        assert value(after, "bot_outbox_pending", account="main") == len(unsent) > 10
        assert value(after, "bot_outbox_oldest_pending_seconds", account="main") >= 0
        assert delta("bot_replies_total") == len(unsent)
        assert value(after, "bot_conversations_active", account="main") == 1
        assert delta("bot_appeals_total", status="ready") == 1  # no SMTP configured: the operator submits it
        assert value(after, "bot_appeals_by_status", status="ready") == 1
        messages = sum(delta("bot_messages_total", kind=k) for k in metrics.MESSAGE_KINDS)
        assert delta("bot_messages_total", kind="image") == 4 and delta("bot_messages_total", kind="video") == 1
        assert delta("bot_turn_seconds_count") == messages
        assert delta("bot_matches_total", tier="confident") >= 1 and delta("bot_matches_total", tier="suggest") == 1
        assert_no_personal_data(body, "小鱼的美食日记", "u2")

        d.engine.mark_sent(unsent)  # as a transport does: the backlog is gone
        after = samples((await health.exposition()).decode())
        assert value(after, "bot_outbox_pending", account="main") == 0
        assert value(after, "bot_outbox_oldest_pending_seconds", account="main") == 0
    finally:
        await d.close()


async def test_an_operator_status_counts_where_it_was_committed(tmp_path, media):
    d = await Driver.open(tmp_path)
    try:
        final, _ = await run_appeal(d, email_answers(media), "没有")
        before = value(samples((await Health(d.engine.store, lambda: True).exposition()).decode()),
                       "bot_appeals_total", status="reviewing")
        d.engine.change_appeal_status(final["appeal_id"], "reviewing", "ops")
        m = samples((await Health(d.engine.store, lambda: True).exposition()).decode())
        assert value(m, "bot_appeals_total", status="reviewing") == before + 1
        assert value(m, "bot_appeals_by_status", status="reviewing") == 1
        assert value(m, "bot_appeals_by_status", status="ready") == 0
    finally:
        await d.close()


async def test_readiness_names_what_is_missing(tmp_path):
    d = await Driver.open(tmp_path)
    try:
        logged_in = False
        health = Health(d.engine.store, lambda: True, gateway=lambda: logged_in)
        assert await health.ready() == (False, {"store": "ok", "knowledge": "ok", "gateway": "not logged in"})
        assert value(samples((await health.exposition()).decode()), "bot_gateway_logged_in") == 0
        logged_in = True
        assert (await health.ready())[0] is True
        assert value(samples((await health.exposition()).decode()), "bot_gateway_logged_in") == 1
        assert (await Health(d.engine.store, lambda: False).ready()) == (False, {"store": "ok",
                                                                                 "knowledge": "not loaded"})
    finally:
        await d.close()


async def test_outbox_sends_count_sent_retried_and_given_up():
    from bot.messages import Outgoing
    from bot.transport.outbox import Outbox

    attempts = []

    async def flaky(out):
        attempts.append(out.text)
        if out.text == "never" or len(attempts) == 1:
            raise ConnectionError("down")

    async def no_sleep(_):
        pass

    before = {r: metrics.SENDS.labels(r)._value.get() for r in metrics.SEND_RESULTS}
    box = Outbox(flaky, min_gap=0, retries=2, sleep=no_sleep)
    box.put(Outgoing(chat="c1", to="c1", text="once"))
    box.put(Outgoing(chat="c2", to="c2", text="never"))
    assert await box.drain(5)
    got = {r: metrics.SENDS.labels(r)._value.get() - before[r] for r in metrics.SEND_RESULTS}
    assert got == {"sent": 1, "retry": 3, "failed": 1}  # "once": 1 retry then sent; "never": 2 retries, given up


# -- the web console ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def world(tmp_path_factory, media):
    from web_support import build_world

    return build_world(tmp_path_factory.mktemp("web-monitoring"), media)


def test_console_endpoints_need_no_login_and_the_pages_still_do(world):
    from bot.web.app import create_app

    c = TestClient(create_app(world["settings"]), follow_redirects=False)
    r = c.get("/healthz")
    assert r.status_code == 200 and r.json()["status"] == "ok" and "set-cookie" not in r.headers
    r = c.get("/readyz")
    assert r.status_code == 200 and r.json() == {"ready": True, "checks": {"store": "ok", "knowledge": "ok"}}
    r = c.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    m = samples(r.text)
    # the bot process committed these; the console reads them from the store
    assert value(m, "bot_appeals_by_status", status="ready") == 1
    assert value(m, "bot_outbox_pending", account="main") == 0  # web_support marked them sent
    assert value(m, "bot_conversations_active", account="main") == 0
    assert value(m, "bot_store_up") == 1
    assert_no_personal_data(r.text, "u1", "u2")
    for path in ("/appeals", "/stats", "/audit", "/kb", f"/appeals/{world['appeal_id']}"):
        r = c.get(path)
        assert r.status_code == 303 and r.headers["location"] == "/login", path
    assert not c.cookies  # no session was made for a scraper


def test_console_readiness_fails_while_the_store_file_is_gone(world):
    from bot.web.app import create_app

    c = TestClient(create_app(world["settings"]))
    db = world["settings"].db_path
    db.rename(db.with_suffix(".away"))
    try:
        r = c.get("/readyz")
        assert r.status_code == 503 and r.json() == {"ready": False,
                                                     "checks": {"store": "unreachable", "knowledge": "ok"}}
        assert c.get("/healthz").status_code == 200
        m = samples(c.get("/metrics").text)
        assert value(m, "bot_store_up") == 0 and ("bot_outbox_pending", ("account", "main")) not in m
    finally:
        db.with_suffix(".away").rename(db)
    assert c.get("/readyz").status_code == 200


async def test_smtp_attempts_and_imap_polls_are_counted_by_result(tmp_path, media):
    from test_appeal_delivery import SmtpServer, at, smtp_env

    smtp = SmtpServer()  # not started yet: the first attempt is refused
    env = {**smtp_env(smtp), "BOT_IMAP_HOST": "127.0.0.1", "BOT_IMAP_PORT": str(free_port()),
           "BOT_IMAP_SECURITY": "none", "BOT_IMAP_TIMEOUT_SECONDS": "5"}
    d = await Driver.open(tmp_path, **env)
    health = Health(d.engine.store, lambda: True)
    try:
        before = samples((await health.exposition()).decode())
        await run_appeal(d, email_answers(media), "没有")
        await d.send(tick=at(31))  # SMTP refused (a temporary failure), the IMAP poll fails
        smtp.start()
        await d.send(tick=at(33))  # sent; IMAP: polled again (imap_poll_seconds) and fails again
        smtp.box.refuse = "550 no such mailbox"
        await run_appeal(d, email_answers(media), "没有", user="u2")
        await d.send(tick=at(34))  # refused for good
        after = samples((await health.exposition()).decode())

        def delta(name, **labels):
            return value(after, name, **labels) - value(before, name, **labels)

        assert {r: delta("bot_smtp_sends_total", result=r) for r in metrics.SMTP_RESULTS} == \
            {"sent": 1, "retry": 1, "failed": 1, "too_large": 0, "error": 0}
        assert delta("bot_imap_polls_total", result="failed") == 3 and delta("bot_imap_polls_total", result="ok") == 0
        assert delta("bot_appeals_total", status="queued") == 2 and delta("bot_appeals_total", status="sent") == 1
        assert delta("bot_appeals_total", status="failed") == 1
        assert value(after, "bot_appeals_by_status", status="sent") == 1
        assert value(after, "bot_appeals_by_status", status="failed") == 1
    finally:
        smtp.stop()
        await d.close()


IMAGE_HEALTHCHECK_PORT = 9108  # the Dockerfile's HEALTHCHECK calls http://127.0.0.1:9108/healthz


def test_compose_gives_each_process_its_own_port_and_checks_it():
    import yaml

    services = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text(encoding="utf-8"))["services"]
    ours = {name: s for name, s in services.items() if s.get("build") == ".."}
    served = {}
    for name, s in ours.items():
        env = s["environment"]
        web = s.get("command", [])[-1:] == ["web"]
        port = int(env.get("BOT_WEB_PORT", 8080)) if web else int(env.get("BOT_METRICS_PORT", IMAGE_HEALTHCHECK_PORT))
        assert port, name
        served[name] = port
        checked = s.get("healthcheck", {}).get("test")
        checked_port = int(re.search(r"127\.0\.0\.1:(\d+)/healthz", " ".join(checked)).group(1)) if checked \
            else IMAGE_HEALTHCHECK_PORT
        assert checked_port == port, name  # its own /healthz, not a neighbour's on the host network
    assert len(set(served.values())) == len(served) == 3, served
