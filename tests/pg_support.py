"""A real, throwaway PostgreSQL server for tests: Debian's binaries, started once per session.

The server binaries are Debian's ``postgresql`` package (``make postgres``, a prerequisite of
``make test``), which puts ``initdb``/``pg_ctl`` in /usr/lib/postgresql/<version>/bin (not on
PATH). No cluster of the package is used: each session runs ``initdb`` into a fresh temp dir and
``pg_ctl start`` on a free port of 127.0.0.1 (trust authentication: nothing listens elsewhere; the
Unix socket is in the temp dir too), then stops it and removes the dir at the end.

PostgreSQL refuses to run as root (as CI does): then the server runs as the unprivileged OS user
``postgres`` (created by Debian's package), else as a dedicated ``botpg`` system user created
with ``useradd --system``; ``BOT_PG_OS_USER`` picks another. Not root: it runs as the current user.

Usage in a test module (import the fixture into the module: pytest finds fixtures there; modules
that import it share one server, started on first use and stopped at the end of the session)::

    import pytest
    from pg_support import PG_MISSING_REASON, postgres_server  # noqa: F401 (fixture)

    pytestmark = pytest.mark.skipif(PG_MISSING_REASON is not None, reason=PG_MISSING_REASON or "")

    def test_store(postgres_server):
        url = postgres_server.new_database()     # a fresh, empty database for this test
        with psycopg.connect(url) as conn: ...

``postgres_server.url`` is the session's shared database (``bot_test``). The server runs for
speed, not durability (fsync, synchronous_commit and full_page_writes off): killing the bot is
fine; only an OS crash would lose data. Its timezone is UTC.
"""
from __future__ import annotations

import atexit
import glob
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest

from session_server import SessionShared, free_port, system_user

#: The superuser role initdb creates (whatever the OS user); the URL's user.
PG_ROLE = "bot"
#: The database created at start; ``PgServer.url`` points at it.
DEFAULT_DB = "bot_test"
#: Prefix of the per-server temp dirs (the stale-server sweep only touches these).
DIR_PREFIX = "botpg-"
DEDICATED_OS_USER = "botpg"

_NAME_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_DB_COUNTER = iter(range(1, 1 << 30))


class PgError(RuntimeError):
    """The test server could not be set up or started (the message says why, with its log)."""


def find_bin_dir() -> Path | None:
    """The newest /usr/lib/postgresql/<version>/bin with initdb, pg_ctl and postgres (else PATH)."""
    def version(path: str) -> tuple[int, ...]:
        m = re.search(r"/postgresql/(\d+(?:\.\d+)*)/bin$", path)
        return tuple(int(x) for x in m.group(1).split(".")) if m else (-1,)

    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True)
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(str(Path(on_path).resolve().parent))
    for d in candidates:
        if all(os.access(Path(d, exe), os.X_OK) for exe in ("initdb", "pg_ctl", "postgres")):
            return Path(d)
    return None


def _missing_reason() -> str | None:
    if find_bin_dir() is None:
        return ("PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin/pg_ctl): "
                "run `make postgres` (apt-get install postgresql)")
    try:
        import psycopg  # noqa: F401
    except ImportError as exc:
        return f"psycopg not importable ({exc}): pip install -e '.[test]'"
    if os.geteuid() == 0 and not (shutil.which("useradd") or _user_exists("postgres")):
        return "running as root with no `postgres` user and no useradd to create one"
    return None


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


#: None when the PostgreSQL tests can run; else why not (for ``pytest.mark.skipif``).
PG_MISSING_REASON: str | None = _missing_reason()


def server_os_user() -> pwd.struct_passwd | None:
    """The OS user to run the server as: None (the current user) unless running as root."""
    if os.geteuid() != 0:
        return None
    wanted = os.environ.get("BOT_PG_OS_USER")
    for name in ([wanted] if wanted else ["postgres", DEDICATED_OS_USER]):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            pass
    if wanted:
        raise PgError(f"BOT_PG_OS_USER={wanted}: no such user")
    try:
        return system_user(DEDICATED_OS_USER, "throwaway PostgreSQL for the bot's tests")
    except RuntimeError as e:
        raise PgError(str(e)) from None


def _proc_start_time(pid: int) -> str | None:
    """Start time of a live process (to tell it from a later one with the same pid), else None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22, counted after "pid (comm)"


@dataclass
class PgServer:
    bin_dir: Path
    root: Path                      # the temp dir: data/, server.log, owner, the socket
    port: int
    os_user: pwd.struct_passwd | None
    host: str = "127.0.0.1"
    role: str = PG_ROLE
    dbname: str = DEFAULT_DB
    _stopped: bool = field(default=False, repr=False)

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_path(self) -> Path:
        return self.root / "server.log"

    @property
    def url(self) -> str:
        """``postgresql://bot@127.0.0.1:PORT/bot_test``: the session's shared database."""
        return self.url_for(self.dbname)

    def url_for(self, dbname: str) -> str:
        return f"postgresql://{self.role}@{self.host}:{self.port}/{dbname}"

    def connect(self, dbname: str | None = None, **kwargs):
        import psycopg

        return psycopg.connect(self.url_for(dbname or self.dbname), **kwargs)

    def new_database(self, name: str | None = None) -> str:
        """Create a fresh, empty database (dropping one of that name first); return its URL."""
        from psycopg import sql

        name = name or f"t{os.getpid()}_{next(_DB_COUNTER)}"
        if not _NAME_RE.match(name):
            raise ValueError(f"database name {name!r}: use [a-z_][a-z0-9_]*, at most 63 characters")
        with self.connect("postgres", autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            # FILE_COPY: a plain copy of the (tiny) template, faster than WAL_LOG (15's default)
            # with fsync off.
            strategy = " STRATEGY = FILE_COPY" if conn.info.server_version >= 150000 else ""
            conn.execute(sql.SQL("CREATE DATABASE {}" + strategy).format(sql.Identifier(name)))
        return self.url_for(name)

    def pg_ctl(self, *args: str, timeout: float = 90) -> subprocess.CompletedProcess:
        return _run(self, [str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), *args], timeout)

    def stop(self) -> None:
        """``pg_ctl stop -m fast``, then remove the temp dir. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        if (self.data_dir / "postmaster.pid").exists():
            try:
                proc = self.pg_ctl("stop", "-m", "fast", "-w", "-t", "30", timeout=40)
            except subprocess.TimeoutExpired:
                proc = None
            if proc is None or proc.returncode != 0:
                self.pg_ctl("stop", "-m", "immediate", "-w", "-t", "30", timeout=40)
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "PgServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(TZ="UTC", LC_ALL="C.UTF-8", LANG="C.UTF-8")
    env.pop("LANGUAGE", None)
    return env


def _run(server_or_user, cmd: list[str], timeout: float = 90, cwd: Path | None = None):
    """Run ``cmd`` as the server's OS user (set by subprocess itself: no su/runuser needed)."""
    if isinstance(server_or_user, PgServer):
        user, cwd = server_or_user.os_user, server_or_user.root
    else:
        user = server_or_user
    ids = {} if user is None else {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
    # cwd: a dir the user can read (else "could not change directory to /root" warnings).
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          cwd=str(cwd) if cwd else None, env=_env(), stdin=subprocess.DEVNULL, **ids)


def _check(proc: subprocess.CompletedProcess, what: str, log: Path | None = None) -> None:
    if proc.returncode == 0:
        return
    tail = ""
    if log is not None and log.exists():
        tail = "\n--- server log ---\n" + "\n".join(log.read_text(errors="replace").splitlines()[-30:])
    raise PgError(f"{what} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}{tail}")


def sweep_stale(base_dir: Path, bin_dir: Path) -> None:
    """Stop and remove servers left in ``base_dir`` by sessions that died (SIGKILL, timeout)."""
    for root in base_dir.glob(DIR_PREFIX + "*"):
        try:
            pid, started = (root / "owner").read_text().split()
            st = root.stat()
        except (OSError, ValueError):
            continue
        if _proc_start_time(int(pid)) == started:
            continue  # its session is alive
        if os.geteuid() not in (0, st.st_uid):
            continue
        if (root / "data" / "postmaster.pid").exists():
            owner = None
            if os.geteuid() == 0 and st.st_uid != 0:
                owner = pwd.getpwuid(st.st_uid)
            _run(owner, [str(bin_dir / "pg_ctl"), "-D", str(root / "data"), "stop", "-m", "immediate",
                         "-w", "-t", "30"], timeout=40, cwd=root)
        shutil.rmtree(root, ignore_errors=True)


def start_postgres(base_dir: Path | None = None, *, dbname: str = DEFAULT_DB) -> PgServer:
    """initdb into a new ``botpg-*`` dir in ``base_dir`` (default: the temp dir), start, create
    ``dbname``; returns the running server (``stop()`` it).

    ``base_dir`` and its parents must be traversable by the server's OS user when running as
    root: pytest's ``tmp_path_factory`` dirs (/tmp/pytest-of-root, mode 0700) are not.
    """
    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise PgError(_missing_reason() or "PostgreSQL binaries not found")
    base_dir = Path(base_dir or tempfile.gettempdir())
    sweep_stale(base_dir, bin_dir)
    user = server_os_user()
    root = Path(tempfile.mkdtemp(prefix=DIR_PREFIX, dir=base_dir))
    (root / "owner").write_text(f"{os.getpid()} {_proc_start_time(os.getpid())}\n")
    if user is not None:
        os.chown(root, user.pw_uid, user.pw_gid)
    server = PgServer(bin_dir=bin_dir, root=root, port=0, os_user=user, dbname=dbname)
    atexit.register(server.stop)  # if the caller never stops it; no-op once stopped
    try:
        proc = _run(server, ["/bin/sh", "-c", 'test -w "$1" && test -x "$1"', "sh", str(root)])
        if proc.returncode != 0:
            raise PgError(f"{root} is not writable by OS user {user.pw_name if user else '?'}: "
                          "give start_postgres() a base_dir it can reach")
        proc = _run(server, [str(bin_dir / "initdb"), "-D", str(server.data_dir), "--username", PG_ROLE,
                             "--auth=trust", "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync"])
        _check(proc, "initdb")
        with open(server.data_dir / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.write(
                "\n# tests/pg_support.py: local only, for speed not durability\n"
                "listen_addresses = '127.0.0.1'\n"
                # a socket path over 107 bytes is refused: then TCP only
                f"unix_socket_directories = '{root if len(str(root)) < 80 else ''}'\n"
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                "timezone = 'UTC'\nlog_timezone = 'UTC'\n")
        for attempt in range(5):  # the free port may be taken before the server binds it
            server.port = free_port()
            if server.log_path.exists():
                server.log_path.unlink()
            proc = server.pg_ctl("start", "-w", "-t", "60", "-l", str(server.log_path),
                                 "-o", f"-c port={server.port}")
            if proc.returncode == 0:
                break
            log = server.log_path.read_text(errors="replace") if server.log_path.exists() else ""
            if "could not bind" not in log and "already in use" not in log:
                break
        _check(proc, "pg_ctl start", server.log_path)
        _wait_accepting(server)
        with server.connect("postgres", autocommit=True) as conn:
            from psycopg import sql

            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    except BaseException:
        server.stop()
        raise
    return server


def _wait_accepting(server: PgServer, timeout: float = 30) -> None:
    import psycopg

    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(server.url_for("postgres"), connect_timeout=5) as conn:
                conn.execute("SELECT 1")
            return
        except psycopg.OperationalError as exc:
            if time.monotonic() > deadline:
                raise PgError(f"server on port {server.port} not accepting connections: {exc}") from exc
            time.sleep(0.1)


# One server per session, however many test modules import the fixture (tests/session_server.py).
_SHARED: SessionShared[PgServer] = SessionShared(lambda: start_postgres(), lambda server: server.stop())
acquire_shared, release_shared = _SHARED.acquire, _SHARED.release


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PgServer]:
    """The session's PostgreSQL server (skips when unavailable); see the module docstring."""
    if PG_MISSING_REASON is not None:
        pytest.skip(PG_MISSING_REASON)
    server = acquire_shared()
    try:
        yield server
    finally:
        release_shared()
