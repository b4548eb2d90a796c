"""One throwaway server per test session, however many test modules import its fixture (pytest
makes a separate session fixture of each import): reference-counted, stopped when the last user is
done. Used by tests/pg_support.py (PostgreSQL) and tests/imap_support.py (Dovecot)."""
from __future__ import annotations

import threading
from typing import Callable, Generic, TypeVar

S = TypeVar("S")


class SessionShared(Generic[S]):
    def __init__(self, start: Callable[[], S], stop: Callable[[S], None]):
        self._start, self._stop = start, stop
        self._server: S | None = None
        self._users = 0
        self._lock = threading.Lock()

    def acquire(self) -> S:
        with self._lock:
            if self._server is None:
                self._server = self._start()
            self._users += 1
            return self._server

    def release(self) -> None:
        with self._lock:
            self._users -= 1
            if self._users == 0 and self._server is not None:
                self._stop(self._server)
                self._server = None
