"""The store: state that survives restarts, one interface (`SqlStore`), two backends, picked by
`database_url` (`open_store`, `open_url`).

    base.py        SqlStore: one turn in one transaction (`commit_turn`), the outbox, conversations,
                   dedupe, the key check, the knowledge generation; what a backend provides
    appeals.py     appeals, statuses, the email thread, the IMAP position, the send queue
    operators.py   counters, unmatched messages, the console's users and audit log, room modes
    transcripts.py the transcripts of recent turns, for conversation review
    funnel.py      the appeal funnel: a turn's steps and a status change's, the rows for a report
    records.py     Conversation, Writes (what a turn writes), TurnHold, statuses, errors
    sqlite.py      the embedded backend (files on disk: files.py)
    postgres.py    the shared backend (files as blob rows)
    janitor.py     unreferenced working files;  copy.py: a store to another backend
"""
from __future__ import annotations

from bot.store.base import SqlStore
from bot.store.records import BOT_STATUSES, OPERATOR_STATUSES, AlreadyProcessed, Conversation, KeyMismatch, Writes
from bot.store.sqlite import SqliteStore, Store

__all__ = ["Store", "SqlStore", "SqliteStore", "Conversation", "Writes", "KeyMismatch", "AlreadyProcessed",
           "BOT_STATUSES", "OPERATOR_STATUSES", "open_store", "open_url", "StoreUrlError"]


class StoreUrlError(ValueError):
    pass


def open_url(url: str, vault, account: str = "", data_dir=None, outbox_lease_seconds: float | None = None) -> SqlStore:
    """`sqlite:///path/to/bot.sqlite3` or `postgresql://user:pass@host:port/db`. With SQLite the
    files live on disk under `data_dir` (default: the database file's folder)."""
    from pathlib import Path

    from bot.store.files import DiskFiles

    if url.startswith("sqlite:///"):
        path = Path(url[len("sqlite:///"):]).expanduser()
        return SqliteStore(path, vault, DiskFiles(Path(data_dir or path.parent)), account=account,
                           outbox_lease_seconds=outbox_lease_seconds)
    if url.startswith(("postgresql://", "postgres://")):
        from bot.store.postgres import PgStore

        return PgStore(url, vault, account=account, outbox_lease_seconds=outbox_lease_seconds)
    raise StoreUrlError("must start with sqlite:/// or postgresql://")


def open_store(settings, vault) -> SqlStore:
    """The store the settings name: `database_url`, else the data dir's SQLite file."""
    url = settings.database_url or f"sqlite:///{settings.db_path}"
    return open_url(url, vault, account=settings.account, data_dir=settings.data_dir,
                    outbox_lease_seconds=settings.outbox_lease_seconds)
