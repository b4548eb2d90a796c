"""The operators' web console on the shared store: a deployment moved to PostgreSQL with `db copy`
(packages and files become rows), then the console reads the appeal, its media and the zip from the
database, and a status change leaves its notice in the shared outbox."""
import io
import json
import zipfile

import pytest

from bot.appeals.crypto import Vault, load_or_create_key
from bot.settings import load_settings
from bot.store import open_url
from bot.store.copy import copy_store
from pg_support import PG_MISSING_REASON, postgres_server  # noqa: F401 (fixture)
from test_web import csrf_of, logged_in
from web_support import ID_NUMBER, build_world

pytestmark = pytest.mark.skipif(PG_MISSING_REASON is not None, reason=PG_MISSING_REASON or "")


@pytest.fixture(scope="module")
def pg_world(tmp_path_factory, media, postgres_server):
    world = build_world(tmp_path_factory.mktemp("web-pg"), media)
    url = postgres_server.new_database()
    vault = Vault(load_or_create_key(world["settings"]))
    src = open_url(f"sqlite:///{world['settings'].db_path}", vault)
    dst = open_url(url, vault)
    try:
        copy_store(src, dst)
    finally:
        src.close()
        dst.close()
    # the data dir no longer holds what the console shows: it must come from the database
    empty = tmp_path_factory.mktemp("web-pg-local")
    settings = load_settings(data_dir=empty, env={**world["env"], "BOT_DATABASE_URL": url})
    return {**world, "settings": settings, "url": url}


def test_the_console_reads_appeals_media_and_zips_from_the_database(pg_world):
    from bot.web.app import create_app

    app = create_app(pg_world["settings"])
    c = logged_in(app)
    a = pg_world["appeal_id"]
    page = c.get(f"/appeals/{a}")
    assert page.status_code == 200 and "110105********002X" in page.text and ID_NUMBER not in page.text
    m = c.get(f"/appeals/{a}/files/id_front_photo")
    assert m.status_code == 200 and m.content == pg_world["media"]["front"].read_bytes()
    assert c.get(f"/appeals/{a}/files/failure_video").content == pg_world["media"]["video"].read_bytes()
    z = zipfile.ZipFile(io.BytesIO(c.get(f"/appeals/{a}/export.zip").content))
    assert json.loads(z.read(f"{a}/appeal.json"))["slots"]["id_number"] == ID_NUMBER
    r = c.post(f"/appeals/{a}/status", data={"csrf": csrf_of(page.text), "status": "reviewing", "note": "在看"})
    assert r.status_code == 303
    told = [u for u in app.state.console.store.unsent() if u.chat == "u1" and u.reply_to is None]
    assert told and "在看" in told[-1].text
    assert not (pg_world["settings"].data_dir / "appeals").exists()


def test_conversation_review_reads_the_copied_transcripts_from_the_database(pg_world):
    import re

    from bot.web.app import create_app

    c = logged_in(create_app(pg_world["settings"]))
    listing = c.get("/conversations").text
    convs = re.findall(r'href="/conversations/([0-9a-f]{16})"', listing)
    assert len(convs) == 2 and "共 2 段对话" in listing  # u1's appeal, u2's unmatched message
    assert len(re.findall(r'href="/conversations/([0-9a-f]{16})"', c.get("/conversations?misread=1").text)) >= 1
    assert len(re.findall(r'href="/conversations/([0-9a-f]{16})"', c.get("/conversations?state=confirm").text)) == 1
    pages = {conv: c.get(f"/conversations/{conv}").text for conv in convs}
    u1 = next(conv for conv, html in pages.items() if "〔图片〕" in html)
    assert "〔身份证号" in pages[u1] and ID_NUMBER not in "".join(pages.values())
    seq = re.search(r'name="seq" value="(\d+)"', pages[u1]).group(1)
    r = c.post(f"/conversations/{u1}/label", data={"csrf": csrf_of(pages[u1]), "seq": seq, "label": "dismiss"})
    assert r.status_code == 303 and "已标注:dismiss" in c.get(f"/conversations/{u1}").text
