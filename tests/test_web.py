"""The operators' web console through Starlette's test client: every route, sessions, CSRF, the
lock-out, the audit log, media streaming, status changes, teaching phrasings, reload."""
import io
import json
import logging
import re
import zipfile

import pytest
from starlette.testclient import TestClient

from bot.kb import load_knowledge
from bot.matching import Matcher
from bot.settings import load_settings
from conftest import KNOWLEDGE
from web_support import ID_NUMBER, PASSWORD, UNMATCHED, build_world


@pytest.fixture(scope="module")
def world(tmp_path_factory, media):
    return build_world(tmp_path_factory.mktemp("web"), media)


@pytest.fixture
def app(world):
    from bot.web.app import create_app

    return create_app(world["settings"])


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def logged_in(app, user="ops", password=PASSWORD) -> TestClient:
    c = TestClient(app, follow_redirects=False)
    token = csrf_of(c.get("/login").text)
    r = c.post("/login", data={"username": user, "password": password, "csrf": token})
    assert r.status_code == 303 and r.headers["location"] == "/appeals", r.text
    return c


def test_every_page_needs_a_session(app, world):
    c = TestClient(app, follow_redirects=False)
    a = world["appeal_id"]
    for path in ("/", "/appeals", f"/appeals/{a}", f"/appeals/{a}/files/id_front_photo", f"/appeals/{a}/export.zip",
                 "/audit", "/unmatched", "/stats", "/kb"):
        r = c.get(path)
        assert r.status_code == 303 and r.headers["location"] == "/login", path
    for path in ("/logout", f"/appeals/{a}/reveal", f"/appeals/{a}/status", "/unmatched/action", "/kb/reload"):
        r = c.post(path, data={"csrf": "x"})
        assert r.status_code == 303 and r.headers["location"] == "/login", path
    assert c.get("/login").status_code == 200


def test_session_cookie_flags(app, world):
    c = TestClient(app, follow_redirects=False)
    token = csrf_of(c.get("/login").text)
    r = c.post("/login", data={"username": "ops", "password": PASSWORD, "csrf": token})
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "max-age=28800" in cookie
    assert "secure" not in cookie.replace("samesite", "")
    from bot.web.app import create_app

    secure = load_settings(data_dir=world["settings"].data_dir, env={
        "BOT_KEY_FILE": str(world["settings"].key_file), "BOT_KNOWLEDGE_DIR": str(world["kdir"]),
        "BOT_WEB_SECURE_COOKIE": "true"})
    c2 = TestClient(create_app(secure), base_url="https://testserver", follow_redirects=False)
    token = csrf_of(c2.get("/login").text)
    r = c2.post("/login", data={"username": "ops", "password": PASSWORD, "csrf": token})
    assert "; secure" in r.headers["set-cookie"].lower()


def test_login_without_csrf_is_refused(app):
    c = TestClient(app, follow_redirects=False)
    c.get("/login")
    assert c.post("/login", data={"username": "ops", "password": PASSWORD}).status_code == 403


def test_wrong_passwords_lock_the_name_out(app):
    c = TestClient(app, follow_redirects=False)
    token = csrf_of(c.get("/login").text)
    for _ in range(5):
        r = c.post("/login", data={"username": "victim", "password": "wrong password!", "csrf": token})
        assert r.status_code == 401
    r = c.post("/login", data={"username": "victim", "password": PASSWORD, "csrf": token})
    assert r.status_code == 401 and "锁定" in r.text  # even the right password, for now
    r = c.post("/login", data={"username": "nobody", "password": PASSWORD, "csrf": token})
    assert r.status_code == 401


def test_posts_without_the_csrf_token_are_refused(app, world):
    c = logged_in(app)
    a = world["appeal_id"]
    for path, data in ((f"/appeals/{a}/reveal", {}), (f"/appeals/{a}/status", {"status": "resolved"}),
                       ("/unmatched/action", {"text": UNMATCHED, "action": "dismiss"}), ("/kb/reload", {}),
                       ("/logout", {})):
        assert c.post(path, data=data).status_code == 403, path
        assert c.post(path, data={**data, "csrf": "forged"}).status_code == 403, path
    assert world["settings"].data_dir and c.get("/appeals").status_code == 200  # still logged in


def test_queue_masks_the_id_number(app, world, caplog):
    caplog.set_level(logging.DEBUG)
    c = logged_in(app)
    r = c.get("/appeals")
    assert r.status_code == 200 and world["appeal_id"] in r.text and "110105********002X" in r.text
    assert ID_NUMBER not in r.text and r.headers["cache-control"] == "no-store"
    assert world["appeal_id"] in c.get("/appeals?status=ready").text
    assert world["appeal_id"] not in c.get("/appeals?status=resolved").text
    assert ID_NUMBER not in caplog.text


def test_appeal_page_media_reveal_and_audit(app, world, caplog):
    caplog.set_level(logging.DEBUG)
    c = logged_in(app)
    a = world["appeal_id"]
    r = c.get(f"/appeals/{a}")
    assert r.status_code == 200 and ID_NUMBER not in r.text and "110105********002X" in r.text
    labels = [m.label for m in load_knowledge(world["kdir"]).routes["email"].materials]
    positions = [r.text.index(label) for label in labels]
    assert positions == sorted(positions)  # every item, in the route's order
    assert f'src="/appeals/{a}/files/id_front_photo"' in r.text and "<video" in r.text
    m = c.get(f"/appeals/{a}/files/id_front_photo")
    assert m.status_code == 200 and m.headers["cache-control"] == "no-store"
    assert m.content == world["media"]["front"].read_bytes() and m.headers["content-type"] == "image/png"
    v = c.get(f"/appeals/{a}/files/failure_video")
    assert v.content == world["media"]["video"].read_bytes()
    shown = c.post(f"/appeals/{a}/reveal", data={"csrf": csrf_of(r.text)})
    assert shown.status_code == 200 and ID_NUMBER in shown.text
    audit = c.get("/audit").text
    for action in ("login", "view_appeal", "view_file", "reveal_id_number"):
        assert action in audit
    assert ID_NUMBER not in audit and ID_NUMBER not in caplog.text


def test_status_change_is_recorded_and_tells_the_creator(app, world):
    c = logged_in(app)
    a = world["appeal_id"]
    token = csrf_of(c.get(f"/appeals/{a}").text)
    r = c.post(f"/appeals/{a}/status", data={"csrf": token, "status": "need_more", "note": "手持照片反光"})
    assert r.status_code == 303
    page = c.get(f"/appeals/{a}").text
    assert "需补充" in page and "web:ops" in page and "手持照片反光" in page
    console = app.state.console
    told = [u for u in console.store.unsent() if u.chat == "u1" and u.reply_to is None]
    assert told and "手持照片反光" in told[-1].text and a in told[-1].text
    assert "status:need_more" in c.get("/audit").text
    r = c.post(f"/appeals/{a}/status", data={"csrf": token, "status": "shipped"})
    assert r.status_code == 200 and "未能修改状态" in r.text


def test_export_zip_is_the_packages_content(app, world):
    c = logged_in(app)
    a = world["appeal_id"]
    r = c.get(f"/appeals/{a}/export.zip")
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    z = zipfile.ZipFile(io.BytesIO(r.content))
    names = {n.split("/", 1)[1] for n in z.namelist()}
    assert {"appeal.json", "email.eml", "id_front_photo.png", "failure_video.mp4"} <= names
    assert json.loads(z.read(f"{a}/appeal.json"))["slots"]["id_number"] == ID_NUMBER
    assert z.read(f"{a}/id_front_photo.png") == world["media"]["front"].read_bytes()
    assert "export" in c.get("/audit").text


def test_teaching_a_phrasing_from_unmatched(app, world):
    c = logged_in(app)
    page = c.get("/unmatched").text
    assert UNMATCHED in page
    assert Matcher(load_knowledge(world["kdir"])).match(UNMATCHED).tier == "none"
    r = c.post("/unmatched/action", data={"csrf": csrf_of(page), "text": UNMATCHED, "action": "prompt",
                                           "prompt_id": "15"})
    assert r.status_code == 200 and "已加入提示语 15" in r.text
    assert UNMATCHED not in r.text.split("</p>", 1)[1]  # taught: gone from the list
    learned = (world["kdir"] / "learned.yaml").read_text(encoding="utf-8")
    assert UNMATCHED in learned
    kb = load_knowledge(world["kdir"])
    assert Matcher(kb).match(UNMATCHED).id == 15  # the next identical message matches
    for f in ("prompts.yaml", "faq.yaml", "intents.yaml"):  # hand-written files untouched
        assert (world["kdir"] / f).read_text(encoding="utf-8") == (KNOWLEDGE / f).read_text(encoding="utf-8")


def test_unmatched_lists_what_was_not_understood_while_waiting(app, world):
    from datetime import datetime, timezone

    from bot.store import Writes

    store, now = app.state.console.store, datetime.now(timezone.utc)
    w = Writes()
    w.record_unmatched("那我再等等吧", now)
    for _ in range(2):
        w.record_not_understood("那我再等等吧", "collecting", "real_name", now)  # same text, waiting: its own row
    w.record_not_understood("这个审核要多久啊亲", "confirm", "confirm", now)
    w.record_not_understood("<b>手机</b>13812345678", "collecting", "contact", now)
    store.commit_turn(None, None, now, w, [])
    c = logged_in(app)
    page = c.get("/unmatched").text
    cards = [(re.search(r'class="kind[^"]*">([^<]+)</span>', card).group(1), card)
             for card in re.findall(r'<li class="card">.*?</li>', page, re.S)]
    assert {label for label, _ in cards} >= {"空闲", "等待:姓名", "等待:confirm", "等待:联系方式"}
    assert any(label == "空闲" and "那我再等等吧" in card for label, card in cards)
    cards = dict(cards)  # one card of each waiting label here
    assert "那我再等等吧" in cards["等待:姓名"] and "2 次" in cards["等待:姓名"]
    assert '<input type="hidden" name="state" value="collecting">' in cards["等待:姓名"]
    assert '<input type="hidden" name="awaiting" value="real_name">' in cards["等待:姓名"]
    assert "&lt;b&gt;手机&lt;/b&gt;138****5678" in page and "13812345678" not in page and "<b>手机" not in page
    # dismissing the waiting row leaves the idle row of the same text
    r = c.post("/unmatched/action", data={"csrf": csrf_of(page), "text": "那我再等等吧", "action": "dismiss",
                                           "state": "collecting", "awaiting": "real_name"})
    assert r.status_code == 303
    rows = {(x["kind"], x["text"]) for x in store.top_unmatched_all(datetime(2000, 1, 1, tzinfo=timezone.utc), 100)}
    assert ("idle", "那我再等等吧") in rows and ("waiting", "那我再等等吧") not in rows
    page = c.get("/unmatched").text
    assert "等待:姓名" not in page and "那我再等等吧" in page
    # teaching a waiting row (as an FAQ phrasing) removes that row
    r = c.post("/unmatched/action", data={"csrf": csrf_of(page), "text": "这个审核要多久啊亲", "action": "faq",
                                           "faq_id": "review_time", "state": "confirm", "awaiting": "confirm"})
    assert r.status_code == 200 and "已加入FAQ review_time" in r.text
    assert "这个审核要多久啊亲" not in r.text.split("</p>", 2)[2]
    assert "这个审核要多久啊亲" in (world["kdir"] / "learned.yaml").read_text(encoding="utf-8")
    # and the idle row is dismissed as before (no state)
    r = c.post("/unmatched/action", data={"csrf": csrf_of(page), "text": "那我再等等吧", "action": "dismiss"})
    assert r.status_code == 303 and "那我再等等吧" not in c.get("/unmatched").text
    assert "unmatched_dismiss" in c.get("/audit").text


def test_a_bad_teaching_keeps_the_file(app, world):
    c = logged_in(app)
    page = c.get("/unmatched").text
    before = (world["kdir"] / "learned.yaml").read_text(encoding="utf-8") if (world["kdir"] / "learned.yaml").exists() else None
    r = c.post("/unmatched/action", data={"csrf": csrf_of(page), "text": "随便", "action": "prompt", "prompt_id": "99"})
    assert "未能加入" in r.text
    after = (world["kdir"] / "learned.yaml").read_text(encoding="utf-8") if (world["kdir"] / "learned.yaml").exists() else None
    assert after == before


def test_stats_and_kb_pages(app, world):
    c = logged_in(app)
    s = c.get("/stats").text
    assert s.count('<svg class="chart"') == 3 and "各状态的申诉数" in s and 'class="funnel"' in s
    k = c.get("/kb")
    assert "版本" in k.text and "18 条" in k.text
    r = c.post("/kb/reload", data={"csrf": csrf_of(k.text)})
    assert "已重载" in r.text
    bad = world["kdir"] / "zz_broken.yaml"
    bad.write_text("prompts: [", encoding="utf-8")
    try:
        r = c.post("/kb/reload", data={"csrf": csrf_of(k.text)})
        assert "重载失败" in r.text and "zz_broken.yaml 第 1 行" in r.text
    finally:
        bad.unlink()


def test_logout_ends_the_session(app):
    c = logged_in(app)
    token = csrf_of(c.get("/appeals").text)
    assert c.post("/logout", data={"csrf": token}).status_code == 303
    assert c.get("/appeals").headers["location"] == "/login"


def test_listening_beyond_loopback_needs_the_setting(world):
    from bot.web.serve import check_listen

    assert check_listen(world["settings"], "127.0.0.1") is None
    assert "web_allow_remote" in check_listen(world["settings"], "0.0.0.0")
    allowed = load_settings(env={"BOT_WEB_ALLOW_REMOTE": "true"})
    assert check_listen(allowed, "0.0.0.0") is None


async def test_a_running_bot_picks_up_a_taught_phrasing_on_its_next_tick(tmp_path):
    import shutil

    from bot.kb.learned import add_phrasing
    from driver import Driver

    kdir = tmp_path / "kb"
    shutil.copytree(KNOWLEDGE, kdir)
    d = await Driver.open(tmp_path, BOT_KNOWLEDGE_DIR=str(kdir))
    try:
        r = await d.say(UNMATCHED)
        assert r["prompt_id"] is None
        add_phrasing(kdir, "prompt", 15, UNMATCHED)  # what the console does, in another process
        await d.send(tick="2026-11-24T10:01:00+08:00")
        r = await d.say(UNMATCHED, user="u3")
        assert r["prompt_id"] == 15
    finally:
        await d.close()


def test_pages_escape_what_creators_typed_and_allow_no_script(app, world):
    from datetime import datetime, timezone

    app.state.console.store.record_unmatched("<script>alert(1)</script>认证", datetime.now(timezone.utc))
    c = logged_in(app)
    r = c.get("/unmatched")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in r.text and "<script>alert" not in r.text
    csp = r.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp  # so no script runs at all
    assert r.headers["x-frame-options"] == "DENY" and r.headers["x-content-type-options"] == "nosniff"
    assert "<script" not in c.get("/appeals").text and "onchange=" not in c.get("/appeals").text
