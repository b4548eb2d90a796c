"""The appeal funnel (issue #20 part 4) on SQLite: the scripted conversations of funnel_script.py
through the real engine, the status changes by the bot's, the IMAP poll's and operators' paths
(the store, the CLI's and the web console's `change_status`), then the exact numbers from the
store, from `python -m bot stats --json` (with periods) and on /stats (Starlette's test client)."""
import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from funnel_script import build_world, check_report, expected_median
from test_appeal_delivery import smtp  # noqa: F401 (fixture)
from web_support import PASSWORD

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def world(tmp_path_factory, media):
    return build_world(tmp_path_factory.mktemp("funnel"), media)


def open_store(world):
    from bot.appeals.crypto import Vault, load_or_create_key
    from bot.store import Store

    return Store(world["settings"].db_path, Vault(load_or_create_key(world["settings"])))


def test_the_store_counts_each_step_once_per_attempt(world, kb):
    from bot.stats.funnel import funnel_report

    store = open_store(world)
    try:
        check_report(funnel_report(store, kb), world["events"])
    finally:
        store.close()


def test_the_funnel_rows_hold_no_personal_data(world):
    rows = sqlite3.connect(world["settings"].db_path).execute("SELECT * FROM funnel").fetchall()
    assert rows
    text = json.dumps(rows, ensure_ascii=False)
    for personal in ("欧阳娜娜", "11010519491231002X", "110105194912310021", "13800138000", "小鱼的美食日记",
                     "iPhone", '"u1"', '"u6"'):
        assert personal not in text
    columns = [c[1] for c in sqlite3.connect(world["settings"].db_path).execute("PRAGMA table_info(funnel)")]
    assert columns == ["attempt", "step", "slot", "prompt_id", "route", "appeal_id", "at"]


def stats_cli(world, *args) -> subprocess.CompletedProcess:
    s = world["settings"]
    env = dict(os.environ, BOT_KEY_FILE=str(s.key_file), PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "bot", "stats", "--data-dir", str(s.data_dir), *args],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_stats_json_and_its_periods(world):
    p = stats_cli(world, "--json")
    assert p.returncode == 0, p.stderr
    report = json.loads(p.stdout)
    check_report(report, world["events"])
    assert [s["step"] for s in report["funnel"]][:5] == ["remedy", "offered", "accepted", "route_online", "route_email"]
    assert report["recorded_since"].startswith("2026-11-24T02:00")  # the first remedy, 10:00 Beijing time
    # the attempts began on 2026-11-24 (Beijing time): a period is the days they began on
    assert json.loads(stats_cli(world, "--json", "--since", "2026-11-24").stdout)["attempts"] == 8
    assert json.loads(stats_cli(world, "--json", "--since", "2026-11-24", "--until", "2026-11-24").stdout)["attempts"] == 8
    later = json.loads(stats_cli(world, "--json", "--since", "2026-11-25").stdout)
    assert later["attempts"] == 0 and all(s["count"] == 0 for s in later["funnel"]) and later["groups"] == []
    assert json.loads(stats_cli(world, "--json", "--until", "2026-11-23").stdout)["attempts"] == 0
    bad = stats_cli(world, "--since", "24.11.2026")
    assert bad.returncode == 2 and "YYYY-MM-DD" in bad.stderr
    text = stats_cli(world)
    assert text.returncode == 0 and "确认提交" in text.stdout and "最多人停在:身份证号码(邮箱/人工客服,2 人)" in text.stdout


def logged_in(app) -> TestClient:
    c = TestClient(app, follow_redirects=False)
    token = re.search(r'name="csrf" value="([^"]+)"', c.get("/login").text).group(1)
    r = c.post("/login", data={"username": "ops", "password": PASSWORD, "csrf": token})
    assert r.status_code == 303
    return c


def test_the_stats_page_draws_the_funnel(world):
    from bot.web.app import create_app

    c = logged_in(create_app(world["settings"]))
    assert TestClient(create_app(world["settings"]), follow_redirects=False).get("/stats?days=all").status_code == 303
    page = c.get("/stats?days=all")
    assert page.status_code == 200
    html = page.text
    funnel = html[html.index('id="funnel"'):html.index("按提示语类别")]
    assert funnel.count('<svg class="funnel"') == 3  # the steps, the online and the email items
    for text in ("给出处理办法 8", "提出帮忙申诉 7", "同意申诉 5 · 71%", "流失 2", "选择途径 5:线上反馈 2 · 邮箱 3",
                 "确认提交 2", "已发送 1", "平台已回复 1", "已通过 1", "未通过 1", "8 次尝试"):
        assert text in funnel, text
    assert "身份证号码(邮箱/人工客服,2 人)" in funnel  # where most stopped
    minutes = round(expected_median(world["events"]) / 60)
    assert f"中位 {minutes} 分钟" in funnel or f"中位 {minutes // 60} 小时 {minutes % 60} 分" in funnel
    assert "到达 3 · 填完 1" in funnel and "停在这 2" in funnel  # the ID number on the email route
    assert "版本 10" in funnel and "2026-11-24 10:00" in funnel  # from when the funnel exists
    groups = html[html.index("按提示语类别"):]
    assert groups.count("<details") == 3 and groups.count('<svg class="funnel"') == 3
    for title in ("身份核验未通过(提示语 1-10)(6 次)", "非常规原因认证失败(提示语 15)(1 次)", "无法生成实名认证二维码(提示语 17)(1 次)"):
        assert title in groups, title
    # a period picks the attempts that began in it
    same_day = c.get("/stats?since=2026-11-24&until=2026-11-24").text
    assert "8 次尝试" in same_day and 'value="2026-11-24"' in same_day
    assert "0 次尝试" in c.get("/stats?since=2026-11-25").text
    bad = c.get("/stats?since=24.11.2026").text
    assert "日期格式应为 YYYY-MM-DD" in bad
    for personal in ("欧阳娜娜", "11010519491231002X", "13800138000", "小鱼的美食日记"):
        assert personal not in html


def test_the_web_consoles_status_change_is_a_step(world, tmp_path):
    """An operator's 已通过 on the console (POST /appeals/ID/status) records `resolved` with the change."""
    from bot.web.app import create_app

    store = open_store(world)
    try:
        store._exec("DELETE FROM funnel WHERE step = 'resolved'")
    finally:
        store.close()
    c = logged_in(create_app(world["settings"]))
    appeal_id = world["appeals"]["u6"]
    page = c.get(f"/appeals/{appeal_id}").text
    token = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    r = c.post(f"/appeals/{appeal_id}/status", data={"csrf": token, "status": "resolved", "note": ""})
    assert r.status_code == 303
    report = json.loads(stats_cli(world, "--json").stdout)
    assert {s["step"]: s["count"] for s in report["funnel"]}["resolved"] == 1


def test_what_began_before_the_funnel_adds_no_steps(world):
    """An appeal confirmed before version 10 has no attempt: its later statuses are not steps."""
    from datetime import datetime, timezone

    from bot.store import Writes

    store = open_store(world)
    try:
        at = datetime(2026, 11, 20, tzinfo=timezone.utc)
        w = Writes()
        w.add_appeal("AP-20261120-OLD001", "u-old", "email", 2, "-", at)
        store.commit_turn(None, None, at, w, [])
        w = Writes()
        w.set_status("AP-20261120-OLD001", "resolved", at, "cli:test")
        store.commit_turn(None, None, at, w, [])
        assert store.appeal("AP-20261120-OLD001")["status"] == "resolved"
        assert not store._query("SELECT 1 FROM funnel WHERE appeal_id = 'AP-20261120-OLD001'")
    finally:
        store.close()


async def test_a_conversation_from_before_the_funnel_is_not_counted_halfway(driver):
    """Mid-collection at the migration (no attempt in the conversation): its items and 确认 are not
    counted; its next remedy begins an attempt as usual."""
    from bot.store import Conversation

    store = driver.engine.store
    store.save(Conversation("u9", "u9", "collecting", {"prompt_id": 2, "route": "email", "slots": {},
                                                       "failures": {}, "awaiting": "account_name"}))
    r = await driver.say("小鱼的美食日记", "u9")
    assert r["awaiting"] == "real_name"
    assert store.funnel_rows() == []
    await driver.say("取消", "u9")
    await driver.say("人脸与公安网照片不一致,请确保是账户本人操作", "u9")
    assert sorted((r["step"], r["prompt_id"]) for r in store.funnel_rows()) == [("offered", 2), ("remedy", 2)]


async def test_the_send_queue_and_the_admins_command_record_their_steps(tmp_path, media, smtp):
    """The real paths: 确认 queues the email, the tick's send queue sends it over SMTP (`sent`), an
    admin's `#appeal ID 未通过` in a DM (`rejected`); each once, with the status change."""
    from driver import Driver, email_answers, run_appeal
    from test_appeal_delivery import at, smtp_env

    d = await Driver.open(tmp_path, BOT_OCR_ENABLED="false", **smtp_env(smtp))
    try:
        final, _ = await run_appeal(d, email_answers(media), "没有")
        store = d.engine.store
        steps = lambda: sorted(r["step"] for r in store.funnel_rows() if r["step"] not in ("item", "filled"))  # noqa: E731
        assert steps() == ["accepted", "confirmed", "offered", "remedy", "route_email"]
        await d.send(tick=at(60))
        await d.send(tick=at(120))
        assert len(smtp.box.received) == 1 and store.appeal(final["appeal_id"])["status"] == "sent"
        assert steps() == ["accepted", "confirmed", "offered", "remedy", "route_email", "sent"]
        for _ in range(2):
            r = await d.say(f"#appeal {final['appeal_id']} 未通过", user="boss")
            assert final["appeal_id"] in r["text"], r
        assert store.appeal(final["appeal_id"])["status"] == "rejected"
        assert steps() == ["accepted", "confirmed", "offered", "rejected", "remedy", "route_email", "sent"]
        rows = [r for r in store.funnel_rows() if r["step"] in ("sent", "rejected")]
        assert {r["appeal_id"] for r in rows} == {final["appeal_id"]} and {r["prompt_id"] for r in rows} == {2}
        assert {r["route"] for r in rows} == {"email"}
    finally:
        await d.close()


def test_an_attempt_that_changes_route_counts_each_routes_items_apart(kb):
    """重新开始 keeps the attempt; choosing the other route then: each route's items are its own, and
    where it stopped is on the route it chose last."""
    from bot.stats.funnel import funnel_report

    def row(step, slot="", route=None, minute=0):
        return {"attempt": "a1", "step": step, "slot": slot, "prompt_id": 2, "route": route, "appeal_id": None,
                "at": f"2026-11-24T02:{minute:02d}:00+00:00"}

    rows = [row("remedy"), row("offered"), row("accepted", minute=1), row("route_email", route="email", minute=2),
            row("item", "account_name", "email", 2), row("filled", "account_name", "email", 3),
            row("item", "real_name", "email", 3), row("item", "id_handheld_photo", "email", 3),
            row("route_online", route="online", minute=5), row("item", "failure_video", "online", 5),
            row("filled", "failure_video", "online", 6), row("item", "id_handheld_photo", "online", 6)]

    class Rows:
        def funnel_rows(self, since=None, until=None):
            return rows

        def funnel_first_at(self):
            return rows[0]["at"]

    report = funnel_report(Rows(), kb)
    items = {(i["route"], i["slot"]): (i["reached"], i["filled"], i["stopped"]) for i in report["items"]}
    assert items[("online", "id_handheld_photo")] == (1, 0, 1)  # stopped here, on the route chosen last
    assert items[("email", "id_handheld_photo")] == (1, 0, 0) and items[("email", "account_name")] == (1, 1, 0)
    assert items[("online", "id_front_photo")] == (0, 0, 0)
    assert report["stop_item"] == {"route": "online", "slot": "id_handheld_photo", "stopped": 1}
    assert [g["group"] for g in report["groups"]] == ["identity_check"] and report["attempts"] == 1
