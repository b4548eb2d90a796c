"""The store's interface, run against both backends: SQLite (a real file) and PostgreSQL (a real
server started by tests/pg_support.py). What differs between them is tested where it differs:
claims and locks that only matter when several processes share a PostgreSQL database."""
import asyncio
import threading
import time
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from bot.appeals.crypto import Vault
from bot.messages import Outgoing
from bot.store import AlreadyProcessed, Conversation, KeyMismatch, Writes
from bot.store.files import DiskFiles
from bot.store.sqlite import SCHEMA_VERSION, SqliteStore
from pg_support import PG_MISSING_REASON, postgres_server  # noqa: F401 (fixture)

KEY = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
OTHER_KEY = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8="
T0 = datetime(2026, 11, 26, 8, 0, tzinfo=timezone.utc)


def _stores(kind: str, request, tmp_path):
    """`open_store(account=...)` opens a store on this test's database; every call the same
    database (two calls = two processes sharing it)."""
    opened = []
    if kind == "postgresql":
        if PG_MISSING_REASON is not None:
            pytest.skip(PG_MISSING_REASON)
        url = request.getfixturevalue("postgres_server").new_database()

    def open_store(account="main", key=KEY):
        if kind == "sqlite":
            store = SqliteStore(tmp_path / "bot.sqlite3", Vault(key), DiskFiles(tmp_path), account=account)
        else:
            from bot.store.postgres import PgStore

            store = PgStore(url, Vault(key), account=account)
        opened.append(store)
        return store

    open_store.kind = kind
    return open_store, opened


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request, tmp_path):
    """The store's suite runs on both backends."""
    open_store, opened = _stores(request.param, request, tmp_path)
    yield open_store
    for store in opened:
        store.close()


@pytest.fixture
def postgres(request, tmp_path):
    """What only several processes on one PostgreSQL database can show."""
    open_store, opened = _stores("postgresql", request, tmp_path)
    yield open_store
    for store in opened:
        store.close()


def raw(store, sql, args=()):
    return store._query(sql, args)


# -- schema -------------------------------------------------------------------------------------
def test_migrations_are_versioned_and_applied_once(backend):
    first = backend()
    assert first.schema_version() == SCHEMA_VERSION
    assert first.migrations_applied and first.migrations_applied[-1] == SCHEMA_VERSION
    again = backend()
    assert again.migrations_applied == []
    assert raw(again, "SELECT COUNT(*) FROM schema_version WHERE version = ?", (SCHEMA_VERSION,))[0][0] == 1


def test_two_processes_migrating_at_once_take_turns(postgres):
    # SQLite's case: tests/test_store_migrations.py (two processes)
    results, errors = [], []

    def start():
        try:
            results.append(postgres().migrations_applied)
        except Exception as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    from bot.store.postgres import SCHEMA_VERSIONS

    assert sorted(results, key=len) == [[], [], [], [v for v, _, _ in SCHEMA_VERSIONS]]  # one applied them


def test_the_postgresql_schema_has_the_same_version():
    from bot.store import postgres

    assert postgres.SCHEMA_VERSION == SCHEMA_VERSION


# -- conversations and turns --------------------------------------------------------------------
def test_conversation_round_trip_is_encrypted(backend):
    store = backend()
    conv = Conversation("u1", "u1", "collecting", {"slots": {"id_number": "11010519491231002X"}}, T0)
    store.commit_turn(conv, "m1", T0, Writes(), [])
    back = store.load("u1", "u1")
    assert (back.state, back.data, back.last_activity, back.account) == (
        "collecting", {"slots": {"id_number": "11010519491231002X"}}, T0, "main")
    blob = bytes(raw(store, "SELECT data FROM conversations")[0][0])
    assert b"11010519491231002X" not in blob and b"id_number" not in blob
    back.state, back.data = "idle", {}
    store.commit_turn(back, "m2", T0, Writes(), [])
    assert raw(store, "SELECT COUNT(*) FROM conversations")[0][0] == 0


def test_a_turn_commits_whole_or_not_at_all(backend):
    store = backend()
    conv = Conversation("u1", "u1", "collecting", {"slots": {"real_name": "张三"}}, T0)
    writes = Writes()
    writes.record("message", T0)
    writes.record(None, T0)  # events.kind is NOT NULL: the commit fails half-way
    with pytest.raises(Exception):
        store.commit_turn(conv, "m1", T0, writes, [Outgoing(chat="u1", to="u1", text="好的")])
    assert store.load("u1", "u1").state == "idle"
    assert not store.is_processed("m1")
    assert store.unsent() == []
    assert store.event_counts() == {}


def test_a_message_id_is_committed_once(backend):
    a, b = backend("a"), backend("b")
    a.commit_turn(Conversation("u1", "u1", "collecting", {"n": 1}, T0), "m1", T0, Writes(),
                  [Outgoing(chat="u1", to="u1", text="一")])
    with pytest.raises(AlreadyProcessed):
        b.commit_turn(Conversation("u1", "u1", "collecting", {"n": 2}, T0), "m1", T0, Writes(),
                      [Outgoing(chat="u1", to="u1", text="二")])
    assert a.load("u1", "u1").data == {"n": 1}
    assert [r.text for r in a.unsent()] == ["一"]
    assert b.is_processed("m1")


def test_processed_ids_are_pruned(backend):
    store = backend()
    store.commit_turn(None, "old", T0 - timedelta(days=8), Writes(), [])
    store.commit_turn(None, "new", T0, Writes(), [])
    store.prune_processed(T0 - timedelta(days=7))
    assert (store.is_processed("old"), store.is_processed("new")) == (False, True)


def test_idle_conversations_and_references(backend):
    store = backend()
    store.save(Conversation("u1", "u1", "collecting", {"slots": {"id_front_photo": {"file": "k/a.enc"}},
                                                      "appeal_id": "AP-20261126-ABCDEF"}, T0))
    store.save(Conversation("u2", "u2", "collecting", {"pending_file": {"ref": {"file": "k/b.enc"}}},
                            T0 + timedelta(hours=1)))
    assert [c.sender for c in store.idle_conversations(T0 + timedelta(minutes=30))] == ["u1"]
    files, appeal_ids = store.file_references()
    assert files == {"k/a.enc", "k/b.enc"} and appeal_ids == {"AP-20261126-ABCDEF"}
    assert [c.chat for c in store.conversations_of("u2")] == ["u2"]


async def test_turns_of_one_conversation_never_overlap(backend):
    a, b = backend("a"), backend("b")
    async with a.turn(("u1", "u1")) as got:
        assert got
        async with b.turn(("u2", "u2"), wait=False) as other:
            assert other  # another conversation is free
        if backend.kind == "postgresql":
            async with b.turn(("u1", "u1"), wait=False) as same:
                assert not same  # held by the other process
    async with b.turn(("u1", "u1"), wait=False) as same:
        assert same


async def test_a_waiting_turn_sees_what_the_first_committed(postgres):
    """Two processes on one creator: the second waits, then reads the first one's state. (One process
    per SQLite file: there the engine's in-process lock serialises turns.)"""
    a, b = postgres("a"), postgres("b")
    order = []

    async def first():
        async with a.turn(("u1", "u1")):
            order.append("a in")
            await asyncio.sleep(0.3)
            conv = a.load("u1", "u1")
            conv.state, conv.data, conv.last_activity = "collecting", {"step": 1}, T0
            a.commit_turn(conv, "m1", T0, Writes(), [])
            order.append("a out")

    async def second():
        await asyncio.sleep(0.05)
        async with b.turn(("u1", "u1")):
            order.append("b in")
            conv = b.load("u1", "u1")
            order.append(conv.data.get("step"))

    await asyncio.gather(first(), second())
    assert order == ["a in", "a out", "b in", 1]


async def test_files_written_in_a_turn_vanish_with_it(postgres):
    # On disk (SQLite) a file outlives a failed turn; the janitor removes it (test_crash_recovery).
    store = postgres()
    with pytest.raises(RuntimeError):
        async with store.turn(("u1", "u1")):
            store.files.write("files/k/a.enc", b"token")
            raise RuntimeError("the turn fails")
    assert not store.files.exists("files/k/a.enc")


# -- the outbox ---------------------------------------------------------------------------------
def test_outbox_rows_go_out_through_their_account_once(backend):
    a, b = backend("a"), backend("b")
    a.commit_turn(None, "m1", T0, Writes(), [Outgoing(chat="u1", to="u1", text="一", reply_to="m1"),
                                               Outgoing(chat="u1", to="u1", text="二", reply_to="m1")])
    b.commit_turn(None, "m2", T0, Writes(), [Outgoing(chat="u2", to="u2", text="三", reply_to="m2")])
    a.commit_turn(None, None, T0, Writes(), [Outgoing(chat="u2", to="u2", text="经 b 发", account="b")])
    a.commit_turn(None, None, T0, Writes(), [Outgoing(chat="u3", to="u3", text="谁都行", account="")])
    mine = a.unsent()
    assert [(r.text, r.reply_to) for r in mine] == [("一", "m1"), ("二", "m1"), ("谁都行", None)]
    assert [r.text for r in b.unsent()] == ["三", "经 b 发"]  # the unowned row was claimed by a
    assert [r.text for r in a.unsent()] == ["一", "二", "谁都行"]  # claimed, not sent: offered again to a
    a.mark_sent([r.outbox_id for r in mine])
    assert a.unsent() == []
    blob = b"".join(bytes(r[0]) for r in raw(a, "SELECT payload FROM outbox"))
    assert "经 b 发".encode() not in blob


def test_a_live_claim_is_kept_and_a_dead_one_taken_over_after_the_lease(postgres):
    a, b = postgres("main"), postgres("main")  # two processes of one account
    a.OUTBOX_LEASE = b.OUTBOX_LEASE = timedelta(seconds=1)
    a.commit_turn(None, "m1", T0, Writes(), [Outgoing(chat="u1", to="u1", text="一", reply_to="m1")])
    [row] = a.unsent()
    for _ in range(3):  # a lives on (polls, renewing its claim) past the lease: b never gets the row
        assert b.unsent() == []
        time.sleep(0.45)
        assert [r.outbox_id for r in a.unsent()] == [row.outbox_id]
    assert b.unsent() == []
    time.sleep(1.2)  # a stopped renewing (it died)
    assert [r.text for r in b.unsent()] == ["一"]
    assert not a.still_claimed(row.outbox_id)  # a, were it only stalled, must not send it now
    assert b.still_claimed(row.outbox_id)
    b.mark_sent([row.outbox_id])
    assert a.unsent() == [] and b.unsent() == [] and not b.still_claimed(row.outbox_id)


def test_sent_rows_are_pruned(backend):
    store = backend()
    store.commit_turn(None, None, T0, Writes(), [Outgoing(chat="u1", to="u1", text="x")])
    store.mark_sent([r.outbox_id for r in store.unsent()], at=T0 - timedelta(days=8))
    store.prune_outbox(T0 - timedelta(days=7))
    assert raw(store, "SELECT COUNT(*) FROM outbox")[0][0] == 0


# -- appeals, statuses and the send queue ---------------------------------------------------------
def _appeal(store, appeal_id="AP-20261126-ABCDEF", sender="u1", at=T0, status="queued"):
    w = Writes()
    w.add_appeal(appeal_id, sender, "email", 2, "110105********002X", at, status=status)
    w.queue_send(appeal_id, at)
    store.commit_turn(None, None, at, w, [])


def test_appeals_statuses_and_history(backend):
    store = backend("a")
    _appeal(store, "AP-20261126-AAAAAA", at=T0)
    _appeal(store, "AP-20261126-BBBBBB", sender="u2", at=T0 + timedelta(minutes=1))
    store.change_status("AP-20261126-AAAAAA", "reviewing", T0 + timedelta(hours=1), "web:ops", "看过了",
                        [Outgoing(chat="u1", to="u1", text="审核中", account="a")])
    a = store.appeal("AP-20261126-AAAAAA")
    assert (a["status"], a["note"], a["account"], a["masked_identity"]) == ("reviewing", "看过了", "a",
                                                                          "110105********002X")
    assert [h["status"] for h in store.appeal_history("AP-20261126-AAAAAA")] == ["queued", "reviewing"]
    assert [x["appeal_id"] for x in store.appeals()] == ["AP-20261126-BBBBBB", "AP-20261126-AAAAAA"]
    assert [x["appeal_id"] for x in store.appeals(status="queued")] == ["AP-20261126-BBBBBB"]
    assert store.appeals_per_status() == {"queued": 1, "reviewing": 1}
    w = Writes()
    w.set_status("AP-20261126-BBBBBB", "sent", T0, "bot", None, "<AP-20261126-BBBBBB@dayu-bot.invalid>")
    store.commit_turn(None, None, T0, w, [])
    assert store.appeal("AP-20261126-BBBBBB")["message_id"] == "<AP-20261126-BBBBBB@dayu-bot.invalid>"


def test_due_sends_are_claimed_by_one_process(backend):
    a, b = backend("a"), backend("b")
    _appeal(a)
    assert a.due_sends(T0) == [("AP-20261126-ABCDEF", 0)]
    assert a.claim_due_sends(T0) == [("AP-20261126-ABCDEF", 0)]
    if backend.kind == "postgresql":
        assert b.claim_due_sends(T0) == []  # claimed: not retried by another process meanwhile
        later = T0 + a.SEND_LEASE + timedelta(seconds=1)
        assert b.claim_due_sends(later) == [("AP-20261126-ABCDEF", 0)]  # its claimer died
    w = Writes()
    w.drop_send("AP-20261126-ABCDEF")
    a.commit_turn(None, None, T0, w, [])
    assert a.pending_sends() == 0


def test_expired_packages_are_deleted_once(backend):
    a, b = backend("a"), backend("b")
    _appeal(a, status="ready")
    a.change_status("AP-20261126-ABCDEF", "resolved", T0, "cli:ops", None, [])
    deleted = []
    assert a.expire_packages(T0 - timedelta(days=1), T0, deleted.append) == []
    assert a.expire_packages(T0 + timedelta(days=1), T0, deleted.append) == ["AP-20261126-ABCDEF"]
    assert b.expire_packages(T0 + timedelta(days=1), T0, deleted.append) == []
    assert deleted == ["AP-20261126-ABCDEF"]
    assert a.appeal("AP-20261126-ABCDEF")["package_deleted"] == 1
    assert a.appeal_history("AP-20261126-ABCDEF")[-1]["status"] == "package_deleted"


def test_delete_user_removes_their_rows(backend):
    store = backend()
    _appeal(store)
    store.save(Conversation("u1", "u1", "collecting", {"x": 1}, T0))
    store.save(Conversation("u2", "u2", "collecting", {"x": 2}, T0))
    w = Writes()
    w.delete_user("u1")
    store.commit_turn(None, None, T0, w, [])
    assert store.appeals() == [] and store.pending_sends() == 0
    assert raw(store, "SELECT COUNT(*) FROM appeal_history")[0][0] == 0
    assert [c.sender for c in store.idle_conversations(T0)] == ["u2"]


# -- key, knowledge version, stats, operators, rooms ----------------------------------------------
def test_a_wrong_key_is_refused(backend):
    backend().check_key()
    backend().check_key()
    with pytest.raises(KeyMismatch):
        backend(key=OTHER_KEY).check_key()


def test_a_reload_anywhere_changes_the_generation_everywhere(backend):
    a, b = backend("a"), backend("b")
    assert a.kb_generation() == ""
    token = a.bump_kb_generation()
    assert b.kb_generation() == token != ""
    assert b.bump_kb_generation() != token


def test_stats(backend):
    store = backend()
    w = Writes()
    w.record("message", T0)
    w.record("message", T0 + timedelta(days=1))
    w.record("match", T0, 3)
    w.record("match", T0, 3)
    w.record_unmatched("在吗", T0)
    w.record_unmatched("在吗", T0 + timedelta(minutes=1))
    w.record_unmatched("你好", T0)
    store.commit_turn(None, None, T0, w, [])
    assert store.event_counts() == {"message": 2, "match": 2}
    assert store.event_counts(T0 + timedelta(hours=1)) == {"message": 1}
    assert store.match_counts() == {3: 2}
    assert store.top_unmatched(T0 - timedelta(days=1)) == [("在吗", 2), ("你好", 1)]
    store.dismiss_unmatched("在吗")
    assert store.top_unmatched(T0 - timedelta(days=1)) == [("你好", 1)]
    assert store.messages_per_day(T0 - timedelta(days=1)) == [("2026-11-26", 1), ("2026-11-27", 1)]
    # days as people read them: 17:30 UTC on the 26th is 01:30 on the 27th in Shanghai
    late = Writes()
    late.record("message", T0 + timedelta(hours=9, minutes=30))
    store.commit_turn(None, None, T0, late, [])
    assert store.messages_per_day(T0 - timedelta(days=1)) == [("2026-11-26", 2), ("2026-11-27", 1)]
    assert store.messages_per_day(T0 - timedelta(days=1), ZoneInfo("Asia/Shanghai")) == [
        ("2026-11-26", 1), ("2026-11-27", 2)]


def test_messages_not_understood_while_waiting(backend):
    store = backend()
    w = Writes()
    w.record_unmatched("在吗", T0)
    w.record_not_understood("  我的  名字\n是啥来着 ", "collecting", "real_name", T0)
    w.record_not_understood("我的 名字 是啥来着", "collecting", "real_name", T0 + timedelta(minutes=1))
    w.record_not_understood("我的 名字 是啥来着", "confirm", "confirm", T0)  # another state: another row
    w.record_not_understood("打我电话13812345678", "appeal_offer", None, T0)
    w.record_not_understood("号码是11010519491231002X", "collecting", "id_number", T0)  # an ID number: skipped
    w.record_not_understood("   ", "collecting", "real_name", T0)  # nothing left: skipped
    w.record_not_understood("随便问问", "idle", None, T0)  # idle: an idle unmatched message
    store.commit_turn(None, None, T0, w, [])
    since = T0 - timedelta(days=1)
    rows = store.top_unmatched_all(since)
    assert rows[0] == {"text": "我的 名字 是啥来着", "count": 2, "last_at": (T0 + timedelta(minutes=1)).isoformat(),
                       "kind": "waiting", "state": "collecting", "awaiting": "real_name"}
    assert {(r["kind"], r["state"], r["awaiting"], r["text"], r["count"]) for r in rows[1:]} == {
        ("idle", "idle", "", "在吗", 1), ("idle", "idle", "", "随便问问", 1),
        ("waiting", "confirm", "confirm", "我的 名字 是啥来着", 1),
        ("waiting", "appeal_offer", "", "打我电话138****5678", 1)}
    assert not any("1101051949" in r["text"] or "13812345678" in r["text"] for r in rows)
    assert raw(store, "SELECT COUNT(*) FROM unmatched_waiting")[0][0] == 3
    assert sorted(store.top_unmatched(since)) == [("在吗", 1), ("随便问问", 1)]  # the idle kind only, as before
    assert store.top_unmatched_all(T0 + timedelta(seconds=30)) == rows[:1]  # since: by the last time seen
    # a later turn counts on
    w = Writes()
    w.record_not_understood("打我电话13812345678", "appeal_offer", None, T0 + timedelta(hours=1))
    store.commit_turn(None, None, T0, w, [])
    assert [(r["text"], r["count"]) for r in store.top_unmatched_all(since, limit=2)] == [
        ("打我电话138****5678", 2), ("我的 名字 是啥来着", 2)]
    # dismissing: the idle row, then one waiting row (the same text in another state stays)
    store.dismiss_unmatched("在吗")
    store.dismiss_unmatched("我的 名字 是啥来着", "collecting", "real_name")
    store.dismiss_unmatched("打我电话138****5678", "appeal_offer", "")
    left = {(r["kind"], r["state"], r["text"]) for r in store.top_unmatched_all(since)}
    assert left == {("idle", "idle", "随便问问"), ("waiting", "confirm", "我的 名字 是啥来着")}
    store.dismiss_unmatched("我的 名字 是啥来着", "idle")  # idle: no such idle row, the waiting one stays
    store.dismiss_unmatched("随便问问", "idle")
    assert [(r["kind"], r["text"]) for r in store.top_unmatched_all(since)] == [("waiting", "我的 名字 是啥来着")]


def test_operators_audit_and_rooms(backend):
    store = backend()
    store.set_web_user("ops", "hash1", T0)
    store.web_login_result("ops", False, T0 + timedelta(minutes=5))
    assert store.web_user("ops")["failed"] == 1
    store.set_web_user("ops", "hash2", T0)
    assert (store.web_user("ops")["hash"], store.web_user("ops")["failed"]) == ("hash2", 0)
    assert store.web_users() == ["ops"] and store.delete_web_user("ops") and not store.delete_web_user("ops")
    store.audit("ops", "login", None, "127.0.0.1", T0)
    store.audit("ops", "view_appeal", "AP-20261126-ABCDEF", "127.0.0.1", T0)
    assert [r["action"] for r in store.audit_log()] == ["view_appeal", "login"]
    assert store.room_mode("r1") is None
    store.set_room_mode("r1", "auto")
    store.set_room_mode("r1", "off")
    assert store.room_mode("r1") == "off"


# -- the file area --------------------------------------------------------------------------------
def test_files_round_trip_in_either_area(backend):
    files = backend().files
    big = bytes(range(256)) * (3 * 4096 + 17)  # over 3 MiB: several chunks in the database
    files.write("files/k/a.enc", big)
    files.write("files/k/b.enc", b"b")
    assert files.read("files/k/a.enc") == big and files.exists("files/k/b.enc")
    files.write("files/k/b.enc", b"b2")
    assert files.read("files/k/b.enc") == b"b2"
    assert sorted(k for k, _ in files.files_with_age("files")) == ["files/k/a.enc", "files/k/b.enc"]
    files.delete("files/k/b.enc")
    assert not files.exists("files/k/b.enc")
    with pytest.raises(FileNotFoundError):
        files.read("files/k/b.enc")
    files.write_tree("appeals/AP-20261126-ABCDEF", {"appeal.json.enc": b"1", "x.jpg.enc": b"2"})
    files.write_tree("appeals/AP-20261126-ABCDEF", {"appeal.json.enc": b"3"})  # replaced whole
    assert files.folders("appeals") == ["AP-20261126-ABCDEF"]
    assert files.read("appeals/AP-20261126-ABCDEF/appeal.json.enc") == b"3"
    assert not files.exists("appeals/AP-20261126-ABCDEF/x.jpg.enc")
    assert files.delete_tree("files/k") and not files.exists("files/k/a.enc")
    for bad in ("../x", "/etc/passwd", "files//a", "files/./a"):
        with pytest.raises(ValueError):
            files.write(bad, b"x")


def test_database_files_are_seen_by_every_process(postgres):
    a, b = postgres("a"), postgres("b")
    a.files.write("files/k/a.enc", b"token")
    assert b.files.read("files/k/a.enc") == b"token"
    assert raw(b, "SELECT chunks FROM blobs")[0][0] == 1


# -- a store that cannot be opened: one line, no password, no traceback -------------------------
@pytest.mark.parametrize("url,expected", [
    ("postgresql://bot:s3cret@127.0.0.1:1/nowhere", "cannot open the store at postgresql://bot:***@127.0.0.1:1/nowhere"),
    ("mysql://bot@127.0.0.1/x", "database_url: must start with sqlite:/// or postgresql://"),
])
@pytest.mark.parametrize("command", [["db", "migrate"], ["replay", "-"]])
def test_a_store_that_cannot_be_opened_is_one_clear_line(tmp_path, url, expected, command):
    import os
    import subprocess
    import sys

    from conftest import ROOT

    env = dict(os.environ, BOT_DATABASE_URL=url, BOT_APPEAL_KEY=KEY, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", "bot", *command, "--data-dir", str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL, cwd=ROOT)
    assert proc.returncode == 2
    assert expected in proc.stderr and "s3cret" not in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr


# -- db copy: every row and file, still encrypted, either way ------------------------------------
def test_copy_there_and_back_keeps_every_row_and_file(postgres, tmp_path):
    from bot.store.copy import TABLES, CopyError, copy_store

    src = SqliteStore(tmp_path / "one" / "bot.sqlite3", Vault(KEY), DiskFiles(tmp_path / "one"))
    src.check_key()
    _appeal(src)
    w = Writes()
    w.record("message", T0)
    w.record_unmatched("在吗", T0)
    w.record_not_understood("这个怎么填", "collecting", "real_name", T0)
    src.commit_turn(Conversation("u1", "u1", "collecting", {"slots": {"real_name": "张三"}}, T0), "m1", T0, w,
                    [Outgoing(chat="u1", to="u1", text="好的", reply_to="m1")])
    src.set_web_user("ops", "hash", T0)
    src.audit("ops", "login", None, "127.0.0.1", T0)
    src.files.write("files/k/a.enc", b"token-a")
    src.files.write_tree("appeals/AP-20261126-ABCDEF", {"appeal.json.enc": b"token-j"})
    pg = postgres()
    counts = copy_store(src, pg)
    assert counts["files"] == 2 and counts["conversations"] == 1 and counts["outbox"] == 1
    with pytest.raises(CopyError):
        copy_store(src, pg)  # the target is not empty any more
    back = SqliteStore(tmp_path / "two" / "bot.sqlite3", Vault(KEY), DiskFiles(tmp_path / "two"))
    copy_store(pg, back)
    back.check_key()  # the source's key check came along
    for table, columns in TABLES.items():
        cols = ", ".join(columns)
        assert raw(back, f"SELECT {cols} FROM {table} ORDER BY rowid") == raw(src, f"SELECT {cols} FROM {table} "
                                                                                   "ORDER BY rowid"), table
    assert back.files.read("files/k/a.enc") == b"token-a"
    assert back.files.read("appeals/AP-20261126-ABCDEF/appeal.json.enc") == b"token-j"
    assert back.load("u1", "u1").data == {"slots": {"real_name": "张三"}}
    assert [r.text for r in back.unsent()] == ["好的"]
    # new rows continue after the copied ones
    pg.commit_turn(None, None, T0, Writes(), [Outgoing(chat="u2", to="u2", text="新的")])
    assert [r.outbox_id for r in pg.unsent()] == [1, 2]
    src.close()
    back.close()
