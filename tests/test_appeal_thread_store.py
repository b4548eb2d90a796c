"""The store's appeal thread and IMAP position (schema version 8), on both backends."""
from datetime import timedelta

import pytest

from bot.store import BOT_STATUSES, Writes
from pg_support import postgres_server  # noqa: F401 (fixture)
from test_store import T0, _stores, raw


@pytest.fixture(params=["sqlite", "postgresql"])
def stores(request, tmp_path):
    open_store, opened = _stores(request.param, request, tmp_path)
    yield open_store
    for store in opened:
        store.close()


def _sent(store, appeal_id="AP-1", subject="个人实名认证失败材料-小鱼", at=T0):
    w = Writes()
    w.add_appeal(appeal_id, "u1", "email", 2, "110105********002X", at, status="queued")
    w.set_status(appeal_id, "sent", at, "bot", None, f"<{appeal_id}@dayu-bot.invalid>")
    w.add_thread(appeal_id, "sent", at, message_id=f"<{appeal_id}@dayu-bot.invalid>", subject=subject)
    store.commit_turn(None, None, at, w, [])


def test_replied_is_a_bot_status():
    assert BOT_STATUSES.index("sent") < BOT_STATUSES.index("replied")


def test_thread_rows_are_kept_in_order_and_the_reply_is_encrypted(stores):
    store = stores()
    _sent(store)
    w = Writes()
    w.add_thread("AP-1", "reply", T0 + timedelta(hours=1), message_id="<r1@platform>",
                 subject="回复:个人实名认证失败材料-小鱼", body="请补充清晰的手持身份证照片", suggested="need_more",
                 in_reply_to="<AP-1@dayu-bot.invalid>")
    w.set_status("AP-1", "replied", T0 + timedelta(hours=1), "imap")
    store.commit_turn(None, None, T0 + timedelta(hours=1), w, [])
    thread = store.thread("AP-1")
    assert [t["kind"] for t in thread] == ["sent", "reply"]
    assert thread[0]["body"] is None and thread[0]["subject"] == "个人实名认证失败材料-小鱼"
    assert thread[1] == {"kind": "reply", "message_id": "<r1@platform>", "in_reply_to": "<AP-1@dayu-bot.invalid>",
                         "subject": "回复:个人实名认证失败材料-小鱼", "at": thread[1]["at"],
                         "body": "请补充清晰的手持身份证照片", "suggested": "need_more"}
    blob = bytes(raw(store, "SELECT body FROM appeal_thread WHERE kind = 'reply'")[0][0])
    assert "手持".encode() not in blob
    assert store.appeal("AP-1")["status"] == "replied"
    assert store.suggested_status("AP-1") == "need_more"
    assert store.suggested_status("AP-2") is None
    assert store.thread_has("AP-1", "reply", "<r1@platform>") and not store.thread_has("AP-1", "reply", "<x>")
    assert store.appeal_of_reply("<r1@platform>") == "AP-1" and store.appeal_of_message_id("<r1@platform>") is None


def test_a_reply_seen_twice_is_taken_once(stores):
    store = stores()
    _sent(store)
    for _ in range(2):
        w = Writes()
        w.add_thread("AP-1", "reply", T0, message_id="<r1@platform>", body="已处理")
        store.commit_turn(None, None, T0, w, [])
    assert [t["kind"] for t in store.thread("AP-1")] == ["sent", "reply"]


def test_our_emails_find_their_appeal_by_message_id_and_subject(stores):
    store = stores()
    _sent(store, "AP-1", "个人实名认证失败材料-小鱼")
    _sent(store, "AP-2", "个人实名认证失败材料-老王")
    _sent(store, "AP-3", "个人实名认证失败材料-老王")
    w = Writes()
    w.add_thread("AP-1", "supplement_sent", T0, message_id="<AP-1.s1@dayu-bot.invalid>", subject="Re: x",
                 in_reply_to="<AP-1@dayu-bot.invalid>")
    store.commit_turn(None, None, T0, w, [])
    assert store.appeal_of_message_id("<AP-2@dayu-bot.invalid>") == "AP-2"
    assert store.appeal_of_message_id("<AP-1.s1@dayu-bot.invalid>") == "AP-1"
    assert store.appeal_of_message_id("<nobody@x>") is None
    assert store.appeals_with_subject("个人实名认证失败材料-小鱼") == ["AP-1"]
    assert store.appeals_with_subject("个人实名认证失败材料-老王") == ["AP-2", "AP-3"]
    assert store.appeals_with_subject("Re: x") == []  # only the first emails' subjects


def test_the_imap_position_is_committed_with_the_turn(stores):
    store = stores()
    assert store.imap_position("INBOX") is None
    w = Writes()
    w.set_imap_position("INBOX", 1700000000, 5)
    store.commit_turn(None, None, T0, w, [])
    assert store.imap_position("INBOX") == (1700000000, 5)
    w = Writes()
    w.set_imap_position("INBOX", 4_000_000_000, 7)  # UIDVALIDITY is 32 bits unsigned
    store.commit_turn(None, None, T0, w, [])
    assert store.imap_position("INBOX") == (4_000_000_000, 7)
    assert store.imap_position("Other") is None


def test_deleting_a_user_deletes_their_threads(stores):
    store = stores()
    _sent(store)
    w = Writes()
    w.delete_user("u1")
    store.commit_turn(None, None, T0, w, [])
    assert store.thread("AP-1") == [] and store.appeal_of_message_id("<AP-1@dayu-bot.invalid>") is None


def test_version_8_gives_appeals_emailed_before_their_sent_row(tmp_path):
    from bot.appeals.crypto import Vault
    from bot.store.sqlite import SCHEMA_VERSION, SqliteStore
    from test_store import KEY

    store = SqliteStore(tmp_path / "bot.sqlite3", Vault(KEY))
    w = Writes()
    w.add_appeal("AP-OLD", "u1", "email", 2, "110105********002X", T0, status="queued")
    w.set_status("AP-OLD", "sent", T0, "bot", None, "<AP-OLD@dayu-bot.invalid>")
    store.commit_turn(None, None, T0, w, [])
    store._exec("DROP TABLE appeal_thread")
    store._exec("DROP TABLE imap_state")
    store._exec("DELETE FROM schema_version WHERE version >= 8")  # a database of version 7
    store.close()
    store = SqliteStore(tmp_path / "bot.sqlite3", Vault(KEY))
    assert store.migrations_applied == list(range(8, SCHEMA_VERSION + 1))
    assert store.appeal_of_message_id("<AP-OLD@dayu-bot.invalid>") == "AP-OLD"
    assert [t["kind"] for t in store.thread("AP-OLD")] == ["sent"]
    store.close()
