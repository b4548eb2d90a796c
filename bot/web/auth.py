"""Operators of the web console: argon2id password hashes in the store, lock-out after repeated
failed logins, the session signing key, CSRF tokens."""
from __future__ import annotations

import hmac
import os
import secrets
from datetime import datetime, timedelta, timezone
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MAX_FAILED_LOGINS = 5
LOCK_OUT = timedelta(minutes=15)
MIN_PASSWORD_CHARS = 10
SESSION_HOURS = 8

_hasher = PasswordHasher()  # argon2id with the library's current parameters
# Verifying against this when the user does not exist keeps the answer time the same.
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))


class PasswordError(ValueError):
    pass


def check_new_password(password: str) -> str:
    password = password.rstrip("\r\n")
    if len(password) < MIN_PASSWORD_CHARS:
        raise PasswordError(f"the password needs at least {MIN_PASSWORD_CHARS} characters")
    return password


def set_password(store, name: str, password: str) -> None:
    store.set_web_user(name, _hasher.hash(check_new_password(password)), datetime.now(timezone.utc))


def login(store, name: str, password: str, now: datetime | None = None) -> tuple[bool, str]:
    """(ok, reason) where reason is "ok", "locked" or "bad"; failures count towards a lock-out."""
    now = now or datetime.now(timezone.utc)
    user = store.web_user(name)
    if user is None:
        _verify(_DUMMY_HASH, password)
        return False, "bad"
    if user["locked_until"] and datetime.fromisoformat(user["locked_until"]) > now:
        return False, "locked"
    if _verify(user["hash"], password):
        store.web_login_result(name, True)
        return True, "ok"
    failed = user["failed"] + 1
    store.web_login_result(name, False, now + LOCK_OUT if failed >= MAX_FAILED_LOGINS else None)
    return False, "locked" if failed >= MAX_FAILED_LOGINS else "bad"


def _verify(hashed: str, password: str) -> bool:
    try:
        return _hasher.verify(hashed, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def session_secret(data_dir: Path) -> str:
    """The key that signs session cookies: a file in the data dir (0600), made on first use."""
    path = Path(data_dir) / "web_session.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(48))
    return path.read_text().strip()


def csrf_token(session: dict) -> str:
    token = session.get("csrf")
    if not token:
        token = session["csrf"] = secrets.token_urlsafe(32)
    return token


def csrf_ok(session: dict, sent: str | None) -> bool:
    expected = session.get("csrf")
    return bool(expected and sent) and hmac.compare_digest(expected, sent)
