"""Encryption at rest for appeal packages (Fernet: AES-128-CBC + HMAC-SHA256).

The key comes from `settings.appeal_key` or `settings.key_file`; the key file lives
outside the data dir by default so a copied data dir alone does not decrypt.
"""
from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

__all__ = [
    "VaultError",
    "AppealKeyError",
    "Vault",
    "load_or_create_key",
    "secure_dir",
    "atomic_write",
]

log = logging.getLogger(__name__)


class VaultError(Exception):
    """Encrypted data cannot be read or written (wrong key, damaged file, bad key)."""


class AppealKeyError(VaultError):
    """The configured appeal key is missing or malformed."""


def secure_dir(path: str | os.PathLike) -> Path:
    """`mkdir -p` where every directory created, and the leaf, is mode 0700."""
    p = Path(path)
    missing: list[Path] = []
    for parent in (p, *p.parents):
        if parent.exists():
            break
        missing.append(parent)
    for d in reversed(missing):
        try:
            d.mkdir(mode=0o700)
        except FileExistsError:  # created concurrently
            pass
        os.chmod(d, 0o700)  # mkdir's mode is filtered by the umask
    if not p.is_dir():
        raise NotADirectoryError(str(p))
    os.chmod(p, 0o700)
    return p


def atomic_write(path: str | os.PathLike, data: bytes, *, mode: int = 0o600) -> Path:
    """Write `data` to a temp file in the same dir (created 0600), fsync, then rename."""
    p = Path(path)
    secure_dir(p.parent)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, p)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return p


def _check_key(key: bytes | str, source: str) -> bytes:
    raw = key.encode("ascii", "replace") if isinstance(key, str) else bytes(key)
    raw = raw.strip()
    try:
        Fernet(raw)
    except (ValueError, TypeError) as exc:
        raise AppealKeyError(
            f"{source} 不是有效的 Fernet 密钥（应为 32 字节的 urlsafe base64，共 44 个字符）。"
            " 可用 `python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'` 生成。"
        ) from exc
    return raw


def load_or_create_key(settings) -> bytes:
    """`settings.appeal_key` if set; else the key file, created (0600, atomically) if missing."""
    if getattr(settings, "appeal_key", ""):
        return _check_key(settings.appeal_key, "appeal_key")
    key_file = Path(settings.key_file)
    if key_file.exists():
        try:
            data = key_file.read_bytes()
        except OSError as exc:
            raise AppealKeyError(f"无法读取密钥文件 {key_file}：{exc}") from exc
        if key_file.stat().st_mode & 0o077:
            log.warning("appeal key file is readable by group/others; run: chmod 600 <key_file>")
        return _check_key(data, f"密钥文件 {key_file}")
    secure_dir(key_file.parent)
    key = Fernet.generate_key()
    fd, tmp = tempfile.mkstemp(dir=key_file.parent, prefix=".appeal-key.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(key + b"\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        try:
            # link() fails if another process created the key meanwhile: never overwrite a
            # key, data encrypted with it would become unreadable.
            os.link(tmp, key_file)
        except FileExistsError:
            return _check_key(key_file.read_bytes(), f"密钥文件 {key_file}")
        except OSError:  # filesystems without hard links
            os.replace(tmp, key_file)
            tmp = ""
    finally:
        if tmp:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
    log.info("created a new appeal encryption key file")
    return key


class Vault:
    """Encrypts/decrypts bytes and files with one Fernet key."""

    def __init__(self, key: bytes | str):
        self._fernet = Fernet(_check_key(key, "密钥"))

    def encrypt(self, data: bytes) -> bytes:
        return self._fernet.encrypt(bytes(data))

    def decrypt(self, token: bytes) -> bytes:
        try:
            return self._fernet.decrypt(bytes(token))
        except InvalidToken as exc:
            raise VaultError("无法解密：密钥不对，或文件已损坏。请确认使用的是创建这些材料时的密钥。") from exc

    def write(self, path: str | os.PathLike, data: bytes) -> Path:
        """Encrypt and write atomically (file 0600, parent dirs 0700)."""
        return atomic_write(path, self.encrypt(data))

    def read(self, path: str | os.PathLike) -> bytes:
        p = Path(path)
        try:
            token = p.read_bytes()
        except OSError as exc:
            raise VaultError(f"无法读取加密文件 {p.name}：{exc.strerror or exc}") from exc
        return self.decrypt(token)
