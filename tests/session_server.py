"""One throwaway server per test session, however many test modules import its fixture (pytest
makes a separate session fixture of each import): reference-counted, stopped when the last user is
done. Used by tests/pg_support.py (PostgreSQL) and tests/imap_support.py (Dovecot); with the two
helpers every test server needs: a free port and, as root, a system user to run it as."""
from __future__ import annotations

import pwd
import socket
import subprocess
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


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def system_user(name: str, comment: str) -> pwd.struct_passwd:
    """The OS user `name`, created (no home, no login) when missing: servers that refuse to run as
    root run as it. Raises RuntimeError when useradd fails."""
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    proc = subprocess.run(
        ["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
         "--shell", "/usr/sbin/nologin", "--comment", comment, name], capture_output=True, text=True)
    if proc.returncode not in (0, 9):  # 9: it exists (created concurrently)
        raise RuntimeError(f"useradd {name} failed: {proc.stderr.strip()}")
    return pwd.getpwnam(name)
