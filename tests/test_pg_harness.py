"""The PostgreSQL test harness itself (tests/pg_support.py): a real server, reachable with
psycopg, UTF-8 text, advisory locks and ``FOR UPDATE SKIP LOCKED`` across connections (what a
PostgreSQL store and its outbox workers will rely on)."""
from __future__ import annotations

import os

import pytest

from pg_support import PG_MISSING_REASON, PG_ROLE, postgres_server  # noqa: F401 (fixture)

pytestmark = pytest.mark.skipif(PG_MISSING_REASON is not None, reason=PG_MISSING_REASON or "")


def test_server_is_local_utf8_and_not_root(postgres_server):
    import psycopg

    assert postgres_server.url.startswith(f"postgresql://{PG_ROLE}@127.0.0.1:{postgres_server.port}/")
    with psycopg.connect(postgres_server.url) as conn:
        assert conn.execute("SHOW server_encoding").fetchone()[0] == "UTF8"
        assert conn.execute("SHOW listen_addresses").fetchone()[0] == "127.0.0.1"
        assert conn.execute("SHOW TimeZone").fetchone()[0] == "UTC"
        assert conn.execute("SELECT current_database()").fetchone()[0] == postgres_server.dbname
    pid = int((postgres_server.data_dir / "postmaster.pid").read_text().split()[0])
    uid = os.stat(f"/proc/{pid}").st_uid
    assert uid != 0 and uid == (postgres_server.os_user.pw_uid if postgres_server.os_user else os.getuid())


def test_chinese_text_round_trip(postgres_server):
    import psycopg

    url = postgres_server.new_database()
    with psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE faq (id serial PRIMARY KEY, question text NOT NULL)")
        conn.execute("INSERT INTO faq (question) VALUES (%s), (%s)", ("实名认证", "如何申诉？"))
        rows = conn.execute("SELECT question FROM faq ORDER BY id").fetchall()
        assert [r[0] for r in rows] == ["实名认证", "如何申诉？"]
        assert conn.execute("SELECT count(*) FROM faq WHERE question LIKE %s", ("%认证",)).fetchone()[0] == 1
        assert conn.execute("SELECT length(%s::text)", ("实名认证",)).fetchone()[0] == 4


def test_new_database_is_fresh(postgres_server):
    import psycopg

    url = postgres_server.new_database("harness_fresh")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (x int)")
    url = postgres_server.new_database("harness_fresh")  # again: dropped and recreated
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT to_regclass('t')").fetchone()[0] is None


def test_advisory_xact_lock(postgres_server):
    import psycopg

    with psycopg.connect(postgres_server.url) as a, psycopg.connect(postgres_server.url) as b:
        assert a.execute("SELECT pg_try_advisory_xact_lock(1)").fetchone()[0] is True
        assert b.execute("SELECT pg_try_advisory_xact_lock(1)").fetchone()[0] is False
        a.commit()  # the transaction ends: the lock is released
        b.rollback()
        assert b.execute("SELECT pg_try_advisory_xact_lock(1)").fetchone()[0] is True
        b.rollback()


def test_for_update_skip_locked_across_connections(postgres_server):
    import psycopg

    url = postgres_server.new_database()
    with psycopg.connect(url, autocommit=True) as setup:
        setup.execute("CREATE TABLE outbox (id int PRIMARY KEY, chat text NOT NULL, sent boolean NOT NULL DEFAULT false)")
        setup.execute("INSERT INTO outbox (id, chat) VALUES (1, '实名认证'), (2, 'b'), (3, 'c')")
    claim = "SELECT id FROM outbox WHERE NOT sent ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED"
    with psycopg.connect(url) as first, psycopg.connect(url) as second:
        assert first.execute(claim).fetchone()[0] == 1      # first worker holds row 1
        assert second.execute(claim).fetchone()[0] == 2     # second skips it instead of waiting
        all_second = second.execute(
            "SELECT id FROM outbox WHERE NOT sent ORDER BY id FOR UPDATE SKIP LOCKED").fetchall()
        assert [r[0] for r in all_second] == [2, 3]
        first.execute("UPDATE outbox SET sent = true WHERE id = 1")
        first.commit()
        second.rollback()
        assert second.execute(claim).fetchone()[0] == 2
        second.rollback()
