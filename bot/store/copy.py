"""`python -m bot db copy --from URL --to URL`: move a deployment's store to another backend
(typically a single-account SQLite data dir to the shared PostgreSQL database).

Rows are copied as they are: conversations and outbox payloads stay encrypted, and so do the
working files and packages (the file area's bytes are Fernet tokens, copied without decrypting).
The target must be empty; everything is written in one transaction of the target, so a failed
copy leaves it empty. The same key must be used afterwards (it is checked before copying).
"""
from __future__ import annotations

# Columns copied (schema version 10, in both backends; not the outbox's claim_until); rows are
# read in insertion order, so the target's sequence columns keep it.
TABLES: dict[str, tuple[str, ...]] = {
    "conversations": ("chat", "sender", "state", "data", "last_activity", "reminded", "account"),
    "processed": ("message_id", "at"),
    "appeals": ("appeal_id", "sender", "route", "prompt_id", "status", "masked_identity", "created_at",
                "status_at", "message_id", "sent_at", "note", "package_deleted", "account"),
    "events": ("kind", "prompt_id", "at"),
    "unmatched": ("text", "count", "last_at"),
    "unmatched_waiting": ("text", "state", "awaiting", "count", "last_at"),
    "rooms": ("room", "mode"),
    "outbox": ("id", "reply_to", "chat", "payload", "created_at", "sent_at", "account", "claimed_by"),
    "meta": ("key", "value"),
    "appeal_history": ("appeal_id", "status", "at", '"by"', "note"),
    "sends": ("appeal_id", "attempts", "next_at", "last_error"),
    "web_users": ("name", "hash", "created_at", "failed", "locked_until"),
    "audit": ("at", "who", "action", "target", "source"),
    "appeal_thread": ("appeal_id", "kind", "message_id", "in_reply_to", "subject", "at", "body", "suggested"),
    "imap_state": ("mailbox", "uidvalidity", "last_uid"),
    # (version 9; the turns get new seq numbers in the target, in the same order)
    "transcripts": ("conv", "chat", "sender", "at", "state_before", "state_after", "prompt_id", "misread", "label",
                    "labelled_by", "payload", "account"),
    "funnel": ("attempt", "step", "slot", "prompt_id", "route", "appeal_id", "at"),
}
# What makes a target "not empty": any of these has a row.
_DATA_TABLES = ("conversations", "processed", "appeals", "outbox", "web_users", "events", "funnel")
FILE_FOLDERS = ("files", "appeals")


class CopyError(Exception):
    pass


def _order(store, table: str) -> str:
    """Insertion order: SQLite's rowid; PostgreSQL's sequence columns (or the outbox's id)."""
    if store.kind == "sqlite":
        return "rowid"
    return {"outbox": "id", "appeals": "seq", "appeal_history": "seq", "audit": "seq",
            "appeal_thread": "seq", "transcripts": "seq"}.get(table, "1")


def copy_store(src, dst, progress=print) -> dict[str, int]:
    """Copy every row and file of `src` into the empty `dst`; returns counts per table/'files'."""
    if src.schema_version() != dst.schema_version():
        raise CopyError(f"schema versions differ ({src.schema_version()} vs {dst.schema_version()}); "
                        "start both with this version first (db migrate)")
    busy = [t for t in _DATA_TABLES if dst._query(f"SELECT 1 FROM {t} LIMIT 1")]
    if busy or any(dst.files.files_with_age(f) for f in FILE_FOLDERS):
        raise CopyError(f"the target is not empty ({', '.join(busy) or 'files'}); copy into a new database")
    counts: dict[str, int] = {}
    with dst.transaction():
        dst._exec("DELETE FROM meta")  # a fresh target wrote its own key check: take the source's
        for table, columns in TABLES.items():
            cols = ", ".join(columns)
            rows = src._query(f"SELECT {cols} FROM {table} ORDER BY {_order(src, table)}")
            marks = ", ".join("?" * len(columns))
            for row in rows:
                dst._exec(f"INSERT INTO {table} ({cols}) VALUES ({marks})",
                          tuple(bytes(v) if isinstance(v, memoryview) else v for v in row))
            counts[table] = len(rows)
        if dst.kind == "postgresql":  # outbox ids were copied: the sequence continues after them
            # (SQLite's AUTOINCREMENT continues after the highest id by itself)
            dst._exec("SELECT setval(pg_get_serial_sequence('outbox', 'id'), COALESCE(MAX(id), 0) + 1, false) "
                      "FROM outbox")
        n = 0
        for folder in FILE_FOLDERS:
            for key, _ in src.files.files_with_age(folder):
                name = key.rsplit("/", 1)[-1]
                if name.startswith(".") or "/." in key:
                    continue  # temp files of an interrupted write
                dst.files.write(key, src.files.read(key))
                n += 1
        counts["files"] = n
    return counts
