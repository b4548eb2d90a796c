"""Versioned schema migrations of the SQLite store: from an empty file, from a database of the first
release (no version table), from a partly migrated one, and two processes starting at once."""
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from bot.appeals.crypto import Vault
from bot.store import Store
from bot.store.sqlite import SCHEMA_VERSION, SCHEMA_VERSIONS

ALL_VERSIONS = [v for v, _, _ in SCHEMA_VERSIONS]  # in order; not necessarily contiguous on a branch

ROOT = Path(__file__).resolve().parent.parent
KEY = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="

FIRST_RELEASE = """
CREATE TABLE conversations (chat TEXT NOT NULL, sender TEXT NOT NULL, state TEXT NOT NULL, data BLOB NOT NULL,
    last_activity TEXT NOT NULL, reminded INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (chat, sender));
CREATE TABLE processed (message_id TEXT PRIMARY KEY, at TEXT NOT NULL);
CREATE TABLE appeals (appeal_id TEXT PRIMARY KEY, sender TEXT NOT NULL, route TEXT NOT NULL, prompt_id INTEGER,
    status TEXT NOT NULL, masked_identity TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE events (kind TEXT NOT NULL, prompt_id INTEGER, at TEXT NOT NULL);
CREATE TABLE unmatched (text TEXT PRIMARY KEY, count INTEGER NOT NULL, last_at TEXT NOT NULL);
CREATE TABLE rooms (room TEXT PRIMARY KEY, mode TEXT NOT NULL);
INSERT INTO appeals VALUES ('AP-20261120-ABCDEF', 'u1', 'email', 2, 'submitted', '110105********002X',
    '2026-11-20T02:00:00+00:00');
INSERT INTO rooms VALUES ('r1', 'auto');
"""


def test_a_new_database_gets_every_version(tmp_path):
    store = Store(tmp_path / "bot.sqlite3", Vault(KEY))
    assert store.migrations_applied == ALL_VERSIONS
    assert store.schema_version() == SCHEMA_VERSION
    store.close()
    again = Store(tmp_path / "bot.sqlite3", Vault(KEY))
    assert again.migrations_applied == []
    again.close()


def test_a_first_release_database_is_migrated_and_keeps_its_data(tmp_path):
    path = tmp_path / "bot.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(FIRST_RELEASE)
    db.close()
    store = Store(path, Vault(KEY))
    assert store.schema_version() == SCHEMA_VERSION
    a = store.appeal("AP-20261120-ABCDEF")
    assert a["status"] == "submitted" and a["masked_identity"] == "110105********002X" and a["note"] is None
    assert store.room_mode("r1") == "auto"
    assert store.unsent() == [] and store.appeal_history("AP-20261120-ABCDEF") == []
    store.close()


def test_columns_added_before_versioning_are_not_added_twice(tmp_path):
    path = tmp_path / "bot.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(FIRST_RELEASE + "ALTER TABLE appeals ADD COLUMN status_at TEXT;"
                                     "ALTER TABLE appeals ADD COLUMN note TEXT;")
    db.close()
    store = Store(path, Vault(KEY))
    assert store.schema_version() == SCHEMA_VERSION
    store.close()


def test_two_processes_starting_at_once_migrate_once(tmp_path):
    code = ("import sys; from pathlib import Path; from bot.store import Store; from bot.appeals.crypto import Vault;"
            f"s = Store(Path(sys.argv[1]), Vault({KEY!r})); print(s.migrations_applied); s.close()")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "bot.sqlite3")], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)))
             for _ in range(4)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), [e for _, e in outs]
    applied = sorted(o.strip() for o, _ in outs)
    assert applied == [str(ALL_VERSIONS), "[]", "[]", "[]"]  # one of them did it all
    rows = sqlite3.connect(tmp_path / "bot.sqlite3").execute("SELECT version FROM schema_version").fetchall()
    assert sorted(r[0] for r in rows) == ALL_VERSIONS  # each version once


def test_db_migrate_command(tmp_path):
    env = dict(os.environ, BOT_APPEAL_KEY=KEY)
    p = subprocess.run([sys.executable, "-m", "bot", "db", "migrate", "--data-dir", str(tmp_path / "d")],
                       capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
    assert p.returncode == 0 and f"schema version {SCHEMA_VERSION} of {SCHEMA_VERSION}" in p.stdout
