"""One clock for people: every time a person reads (chat replies, #kb, the CLI, the web console,
emails, appeal ids) is in the `timezone` setting, to the minute, one format; the store keeps UTC."""
import argparse
import dataclasses
import re
from datetime import datetime, timezone

import pytest

from bot.appeals.package import new_appeal_id
from bot.timefmt import email_date, local_minutes
from driver import Driver, email_answers, make_settings, run_appeal

# 16:41 UTC is 00:41 the next day in Asia/Shanghai: the date differs, so a surface on UTC shows.
LATE = datetime(2026, 12, 5, 16, 41, 7, 123456, tzinfo=timezone.utc)
MINUTES = re.compile(r"\b\d{4}-\d{2}-\d{2} \d{2}:\d{2}\b")


def test_local_minutes_and_the_appeal_id_date_follow_the_setting(tmp_path):
    shanghai = make_settings(tmp_path)
    utc = make_settings(tmp_path, BOT_TIMEZONE="UTC")
    assert local_minutes(LATE, shanghai) == "2026-12-06 00:41"
    assert local_minutes(LATE.isoformat(), utc) == "2026-12-05 16:41"
    assert new_appeal_id(LATE, shanghai).startswith("AP-20261206-")
    assert new_appeal_id(LATE, utc).startswith("AP-20261205-")
    assert email_date(LATE, shanghai) == "Sun, 06 Dec 2026 00:41:07 +0800"
    from bot.appeals.supplement import followup_email

    follow_up = followup_email(shanghai, "AP-20261206-7K3Q9D", 1, "个人实名认证失败材料-x", {}, {"phone_model": "x"},
                               {}, None, [], LATE)
    assert follow_up["Date"] == "Sun, 06 Dec 2026 00:41:07 +0800"


async def _appeal_at(tmp_path, media, when: datetime, **env):
    """A finished email-route appeal whose every turn happens at `when` (UTC)."""
    d = await Driver.open(tmp_path, BOT_ADMINS="boss", **env)
    d.clock = when
    final, _ = await run_appeal(d, email_answers(media), "没有")
    return d, final["appeal_id"]


async def test_chat_admin_cli_and_email_show_the_local_minute(tmp_path, media, capsys):
    d, appeal_id = await _appeal_at(tmp_path, media, LATE)
    try:
        assert appeal_id.startswith("AP-20261206-")  # the creator's date, not UTC's
        store = d.engine.store
        assert store.appeal(appeal_id)["created_at"].startswith("2026-12-05T16:41")  # the store keeps UTC
        d.engine.change_appeal_status(appeal_id, "reviewing", by="cli:ops", now=LATE)
        r = await d.say("进度")
        assert "2026-12-06 00:41" in r["text"] and "16:41" not in r["text"]
        # #kb: when the base was loaded, local, to the minute, no "UTC"
        kb_text = (await d.say("#kb", user="boss"))["text"]
        loaded = next(line for line in kb_text.splitlines() if line.startswith("最近加载"))
        assert "UTC" not in loaded and MINUTES.search(loaded)
        assert local_minutes(d.engine.snapshot.loaded_at, d.engine.settings) in loaded
        assert ":%S" not in loaded and not re.search(r"\d{2}:\d{2}:\d{2}", loaded)
        # the package's email: its Date header in the display timezone
        from bot.appeals.delivery import load_message

        msg = load_message(d.engine.settings, d.engine.vault, appeal_id, store.files)
        assert msg["Date"].startswith("Sun, 06 Dec 2026 00:41:") and msg["Date"].endswith(" +0800")
        # the operator's CLI: list and show
        from bot.appeals.cli import _list, _show

        _list(d.engine.settings, d.engine.vault, store, argparse.Namespace(status=None, json=False))
        _show(d.engine.settings, store, argparse.Namespace(appeal_id=appeal_id))
        out = capsys.readouterr().out
        assert "2026-12-06 00:41" in out and "16:41" not in out and "+00:00" not in out
    finally:
        await d.close()


def test_web_pages_use_the_timezone_setting(tmp_path, media):
    import asyncio

    from bot.web.app import create_app
    from bot.web.auth import set_password

    async def build():
        d, appeal_id = await _appeal_at(tmp_path, media, LATE)
        assert d.engine.store.appeal(appeal_id)["status"] == "ready"
        set_password(d.engine.store, "ops", "correct horse battery")
        await d.close()
        return appeal_id

    appeal_id = asyncio.run(build())
    c = logged_in(create_app(make_settings(tmp_path)))
    # a status the operator cannot set (待提交): the select says so and has no operator status chosen
    select = re.search(r'<select name="status" required>(.*?)</select>', c.get(f"/appeals/{appeal_id}").text, re.S)
    assert re.findall(r'<option value="(\w*)"[^>]*selected', select.group(1)) == [""]
    assert "当前:待提交" in select.group(1)

    async def change():
        d = await Driver.open(tmp_path)
        d.engine.change_appeal_status(appeal_id, "need_more", by="cli:ops", now=LATE)
        await d.close()

    asyncio.run(change())
    settings = make_settings(tmp_path)
    for zone, shown, not_shown in (("Asia/Shanghai", "2026-12-06 00:41", "2026-12-05 16:41"),
                                   ("UTC", "2026-12-05 16:41", "2026-12-06 00:41")):
        c = logged_in(create_app(dataclasses.replace(settings, timezone=zone)))
        for page in ("/appeals", f"/appeals/{appeal_id}"):
            html = c.get(page).text
            assert shown in html and not_shown not in html, (zone, page)
        # the status select starts on the appeal's current status
        html = c.get(f"/appeals/{appeal_id}").text
        select = re.search(r'<select name="status" required>(.*?)</select>', html, re.S).group(1)
        assert re.findall(r'<option value="(\w*)"[^>]*selected', select) == ["need_more"]


def logged_in(app):
    from starlette.testclient import TestClient

    c = TestClient(app, follow_redirects=False)
    token = re.search(r'name="csrf" value="([^"]+)"', c.get("/login").text).group(1)
    c.post("/login", data={"username": "ops", "password": "correct horse battery", "csrf": token})
    return c


@pytest.mark.parametrize("zone", ["Asia/Shanghai", "Europe/Berlin", "UTC"])
def test_the_timezone_setting_is_checked(tmp_path, zone):
    from bot.settings import SettingsError

    s = make_settings(tmp_path, BOT_TIMEZONE=zone)
    assert s.timezone == zone and MINUTES.fullmatch(local_minutes(LATE, s))
    with pytest.raises(SettingsError, match="unknown timezone 'Asia/Shangai'"):
        make_settings(tmp_path, BOT_TIMEZONE="Asia/Shangai")
