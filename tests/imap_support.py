"""A real, throwaway IMAP server for tests: Debian's Dovecot, started once per session.

The server is Debian's ``dovecot-imapd`` (``make dovecot``, a prerequisite of ``make test``); none
of the package's own configuration or service is used. Each session writes a config of its own
into a fresh temp dir (``base_dir``, ``state_dir``, the log, the passwd-file, the Maildirs and a
self-signed certificate all live there) and runs ``dovecot -F -c CONFIG`` on free ports of
127.0.0.1: plain IMAP (``imap_security = none``, STARTTLS offered) and implicit TLS (``ssl``).
The user is a passwd-file entry (``bot`` / ``IMAP_PASSWORD``) whose mail is a Maildir.

Run as root (as CI does), Dovecot's master stays root and its processes run as unprivileged users:
``default_internal_user``/``default_login_user`` and the mail user are the package's ``dovecot``
and ``dovenull`` users where they exist, the mail owned by a dedicated ``botimap`` system user
(created with ``useradd --system``); ``BOT_IMAP_OS_USER`` picks another mail user. Not root: every
process runs as the current user.

Usage in a test module::

    from imap_support import IMAP_MISSING_REASON, imap_server  # noqa: F401 (fixture)

    pytestmark = pytest.mark.skipif(IMAP_MISSING_REASON is not None, reason=IMAP_MISSING_REASON or "")

    def test_x(imap_server):
        box = imap_server.new_mailbox()        # a fresh, empty mailbox for this test
        imap_server.append(box, raw_bytes)      # the "platform" puts a reply in (IMAP APPEND)
        env = imap_server.env(box)              # BOT_IMAP_* settings pointing at it

``stop()``/``start()`` take the server down and up again on the same ports (a server down, then
up). A mailbox is a folder of the one user; ``recreate(box)`` deletes and creates it again, which
gives it a new UIDVALIDITY.
"""
from __future__ import annotations

import atexit
import datetime as _dt
import imaplib
import itertools
import os
import pwd
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest

from session_server import SessionShared, free_port, system_user

DOVECOT = "/usr/sbin/dovecot"
IMAP_USER = "bot"
IMAP_PASSWORD = "imap-test-password"
DIR_PREFIX = "botimap-"
DEDICATED_OS_USER = "botimap"
_BOX_COUNTER = itertools.count(1)


class ImapServerError(RuntimeError):
    """The test server could not be set up or started (the message says why, with its log)."""


def _missing_reason() -> str | None:
    if not os.access(DOVECOT, os.X_OK) or not Path("/usr/lib/dovecot/imap").exists():
        return "Dovecot not found (/usr/sbin/dovecot, /usr/lib/dovecot/imap): run `make dovecot` " \
               "(apt-get install dovecot-imapd)"
    if os.geteuid() == 0 and not (shutil.which("useradd") or _user(DEDICATED_OS_USER)):
        return f"running as root with no `{DEDICATED_OS_USER}` user and no useradd to create one"
    return None


def _user(name: str) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None


#: None when the IMAP tests can run; else why not (for ``pytest.mark.skipif``).
IMAP_MISSING_REASON: str | None = _missing_reason()


def _mail_user() -> pwd.struct_passwd:
    """The OS user owning the mail (and running the mail processes)."""
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid())
    wanted = os.environ.get("BOT_IMAP_OS_USER") or DEDICATED_OS_USER
    found = _user(wanted)
    if found:
        return found
    if wanted != DEDICATED_OS_USER:
        raise ImapServerError(f"BOT_IMAP_OS_USER={wanted}: no such user")
    try:
        return system_user(DEDICATED_OS_USER, "throwaway Dovecot mail for the bot's tests")
    except RuntimeError as e:
        raise ImapServerError(str(e)) from None


def self_signed_cert(cert_path: Path, key_path: Path) -> None:
    """A certificate for 127.0.0.1 and localhost (cryptography, a dependency of the bot)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = _dt.datetime.now(_dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _dt.timedelta(days=1)).not_valid_after(now + _dt.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                         x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))


@dataclass
class ImapServer:
    root: Path
    port: int = 0          # plain IMAP (STARTTLS offered)
    ssl_port: int = 0      # implicit TLS
    host: str = "127.0.0.1"
    user: str = IMAP_USER
    password: str = IMAP_PASSWORD
    proc: subprocess.Popen | None = field(default=None, repr=False)
    _stopped: bool = field(default=False, repr=False)

    @property
    def config(self) -> Path:
        return self.root / "dovecot.conf"

    @property
    def log_path(self) -> Path:
        return self.root / "dovecot.log"

    @property
    def cert(self) -> Path:
        return self.root / "cert.pem"

    # -- the server ---------------------------------------------------------------------------
    def write_config(self) -> None:
        internal = "dovecot" if os.geteuid() == 0 and _user("dovecot") else None
        login = "dovenull" if os.geteuid() == 0 and _user("dovenull") else None
        mail = _mail_user()
        internal = internal or mail.pw_name
        login = login or mail.pw_name
        (self.root / "passwd").write_text(
            f"{self.user}:{{PLAIN}}{self.password}:{mail.pw_uid}:{mail.pw_gid}::{self.root / 'home'}::\n")
        os.chmod(self.root / "passwd", 0o644)  # a test password; the auth processes are unprivileged
        for d in ("home", "mail"):
            (self.root / d).mkdir(exist_ok=True)
            os.chown(self.root / d, mail.pw_uid, mail.pw_gid)
        self.config.write_text(f"""# tests/imap_support.py: a throwaway server, local only
base_dir = {self.root / 'run'}
state_dir = {self.root / 'state'}
log_path = {self.log_path}
info_log_path = {self.log_path}
protocols = imap
listen = 127.0.0.1
default_internal_user = {internal}
default_internal_group = {_group(internal)}
default_login_user = {login}
first_valid_uid = {mail.pw_uid}
first_valid_gid = {mail.pw_gid}
disable_plaintext_auth = no
auth_mechanisms = plain login
ssl = yes
ssl_cert = <{self.cert}
ssl_key = <{self.root / 'key.pem'}
mail_location = maildir:{self.root / 'mail'}/%u
mail_fsync = never
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {self.root / 'passwd'}
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {self.root / 'passwd'}
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {self.ssl_port}
    ssl = yes
  }}
  chroot =
}}
service anvil {{
  chroot =
}}
""")

    def start(self, timeout: float = 30) -> None:
        """Start (again, on the same ports); returns once it accepts a login."""
        if self.proc is not None and self.proc.poll() is None:
            return
        self._stopped = False
        self.proc = subprocess.Popen([DOVECOT, "-F", "-c", str(self.config)], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=self.root)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                out = self.proc.stdout.read().decode(errors="replace") if self.proc.stdout else ""
                raise ImapServerError(f"dovecot exited ({self.proc.returncode}):\n{out}{self._log_tail()}")
            try:
                with self.connect() as conn:
                    conn.noop()
                return
            except (OSError, imaplib.IMAP4.error):
                if time.monotonic() > deadline:
                    self.stop()
                    raise ImapServerError(f"dovecot not accepting logins on {self.port}{self._log_tail()}")
                time.sleep(0.05)

    def stop(self) -> None:
        """Stop the server (its mail stays, for a `start()` again). Idempotent."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.proc.stdout:
            self.proc.stdout.close()
        self.proc = None

    def remove(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def _log_tail(self) -> str:
        if not self.log_path.exists():
            return ""
        return "\n--- dovecot log ---\n" + "\n".join(self.log_path.read_text(errors="replace").splitlines()[-30:])

    # -- as the platform and the tests use it ---------------------------------------------------
    def connect(self) -> imaplib.IMAP4:
        conn = imaplib.IMAP4(self.host, self.port, timeout=10)
        conn.login(self.user, self.password)
        return conn

    def new_mailbox(self) -> str:
        """A fresh, empty folder of the user (each test its own: positions never mix)."""
        name = f"T{os.getpid()}_{next(_BOX_COUNTER)}"
        with self.connect() as conn:
            typ, data = conn.create(name)
            assert typ == "OK", data
        return name

    def recreate(self, mailbox: str) -> None:
        """Delete the folder and create it again: its messages go and its UIDVALIDITY changes."""
        with self.connect() as conn:
            before = self.uidvalidity(mailbox, conn)
            for _ in range(50):
                assert conn.delete(mailbox)[0] == "OK"
                assert conn.create(mailbox)[0] == "OK"
                if self.uidvalidity(mailbox, conn) != before:
                    return
                time.sleep(0.05)  # UIDVALIDITY is a timestamp: same second, same value
            raise AssertionError("UIDVALIDITY did not change")

    @staticmethod
    def uidvalidity(mailbox: str, conn: imaplib.IMAP4) -> int:
        typ, data = conn.status(mailbox, "(UIDVALIDITY)")
        assert typ == "OK", data
        return int(data[0].split(b"UIDVALIDITY")[1].strip(b" ()"))

    def append(self, mailbox: str, raw: bytes, flags: str = "") -> None:
        """Put a message in the folder (IMAP APPEND), as mail arriving from the platform would."""
        with self.connect() as conn:
            typ, data = conn.append(mailbox, f"({flags})" if flags else None, None, raw)
            assert typ == "OK", data

    def messages(self, mailbox: str) -> list[tuple[int, bytes]]:
        """(UID, flags) of every message in the folder, read without touching them."""
        with self.connect() as conn:
            typ, _ = conn.select(mailbox, readonly=True)
            assert typ == "OK"
            typ, data = conn.uid("FETCH", "1:*", "(UID FLAGS)")
            out = []
            for item in data:
                if not item:
                    continue
                raw = item if isinstance(item, bytes) else item[0]
                uid = int(raw.split(b"UID ")[1].split()[0].strip(b")"))
                out.append((uid, raw.split(b"FLAGS (")[1].split(b")")[0]))
            return sorted(out)

    def env(self, mailbox: str, security: str = "none", **extra) -> dict[str, str]:
        """BOT_IMAP_* settings for the bot: this server, this folder, polled on every tick."""
        return {"BOT_IMAP_HOST": self.host, "BOT_IMAP_PORT": str(self.ssl_port if security == "ssl" else self.port),
                "BOT_IMAP_SECURITY": security, "BOT_IMAP_USER": self.user, "BOT_IMAP_PASSWORD": self.password,
                "BOT_IMAP_MAILBOX": mailbox, "BOT_IMAP_POLL_SECONDS": "0", **extra}

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cert))

    def __enter__(self) -> "ImapServer":
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


def _group(user: str) -> str:
    import grp

    return grp.getgrgid(pwd.getpwnam(user).pw_gid).gr_name


def start_imap(base_dir: Path | None = None) -> ImapServer:
    """A new server in a ``botimap-*`` dir of ``base_dir`` (default: the temp dir), started."""
    reason = _missing_reason()
    if reason:
        raise ImapServerError(reason)
    root = Path(tempfile.mkdtemp(prefix=DIR_PREFIX, dir=base_dir))
    os.chmod(root, 0o755)  # the unprivileged processes reach their files in it
    server = ImapServer(root=root)
    atexit.register(server.remove)
    try:
        self_signed_cert(server.cert, root / "key.pem")
        os.chmod(root / "key.pem", 0o600)
        for attempt in range(5):  # a free port may be taken before dovecot binds it
            server.port, server.ssl_port = free_port(), free_port()
            server.write_config()
            try:
                server.start()
                break
            except ImapServerError as exc:
                if "in use" not in str(exc) or attempt == 4:
                    raise
    except BaseException:
        server.remove()
        raise
    return server


# One server per session, however many test modules import the fixture (tests/session_server.py).
_SHARED: SessionShared[ImapServer] = SessionShared(lambda: start_imap(), lambda server: server.remove())
acquire_shared, release_shared = _SHARED.acquire, _SHARED.release


@pytest.fixture(scope="session")
def imap_server() -> Iterator[ImapServer]:
    """The session's Dovecot (skips when unavailable); see the module docstring."""
    if IMAP_MISSING_REASON is not None:
        pytest.skip(IMAP_MISSING_REASON)
    server = acquire_shared()
    try:
        server.start()  # a test may have left it stopped
        yield server
    finally:
        release_shared()
