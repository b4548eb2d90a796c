"""Where encrypted files live: working copies of photos and videos, and appeal packages.

Every file is already a Fernet token when it gets here (the vault encrypts before, decrypts
after); this layer only keeps bytes under a key such as ``files/<user>/<random>.enc`` or
``appeals/<AP-id>/appeal.json.enc``. Two places hold them:

- ``DiskFiles`` (SQLite deployments): the data dir, dirs 0700 and files 0600, each write atomic
  (temp file + rename) and a package folder swapped in whole;
- ``bot.store.postgres.DbFiles`` (PostgreSQL deployments): a table of chunked blobs in the shared
  database, so any process can continue a collection another one started, or export and send a
  package; a write in a turn commits with the turn.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

from bot.appeals.crypto import atomic_write, secure_dir


def safe_key(key: str) -> str:
    """Keys are relative, '/'-separated, without '.' or '..' parts: nothing escapes the root."""
    parts = key.split("/")
    if not key or any(p in ("", ".", "..") for p in parts) or "\\" in key or "\0" in key:
        raise ValueError(f"bad file key {key!r}")
    return key


class DiskFiles:
    """Files under the data dir (the SQLite backend's layout)."""

    kind = "disk"

    def __init__(self, root: Path):
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / safe_key(key)

    def write(self, key: str, token: bytes) -> None:
        atomic_write(self.path(key), token)

    def read(self, key: str) -> bytes:
        """The stored bytes; FileNotFoundError when absent."""
        return self.path(key).read_bytes()

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def delete_tree(self, prefix: str) -> bool:
        """Remove a folder (`files/<user>`, `appeals/<id>`); True when it existed."""
        path = self.path(prefix)
        if not path.exists():
            return False
        shutil.rmtree(path, ignore_errors=True)
        return True

    def write_tree(self, prefix: str, files: dict[str, bytes]) -> None:
        """Write a folder whole: into a temp folder, then renamed into place (replacing an older
        one), so a reader sees the old folder or the new one, never half of either."""
        final = self.path(prefix)
        parent = secure_dir(final.parent)
        tmp = Path(tempfile.mkdtemp(dir=parent, prefix=f".tmp-{final.name}-"))  # created 0700
        try:
            for name, token in files.items():
                atomic_write(tmp / safe_key(name), token)
            os.chmod(tmp, 0o700)
            if final.exists():
                old = final.with_name(f".old-{final.name}-{os.getpid()}")
                os.rename(final, old)
                os.rename(tmp, final)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def folders(self, prefix: str) -> list[str]:
        """Names of the folders directly under `prefix` (no temp folders)."""
        root = self.path(prefix)
        if not root.is_dir():
            return []
        return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))

    def files_with_age(self, prefix: str) -> list[tuple[str, float]]:
        """(key, age in seconds) of every file under `prefix`, for the janitor."""
        root = self.path(prefix)
        out = []
        if not root.is_dir():
            return out
        now = time.time()
        for path in root.rglob("*"):
            try:
                if path.is_file():
                    out.append((path.relative_to(self.root).as_posix(), now - path.stat().st_mtime))
            except FileNotFoundError:
                continue
        return out

    def prune_empty(self, prefix: str) -> None:
        root = self.path(prefix)
        if not root.is_dir():
            return
        for d in sorted((p for p in root.iterdir() if p.is_dir()), reverse=True):
            try:
                d.rmdir()  # only when empty
            except OSError:
                pass

    def delete_temp_folders(self, prefix: str, names: set[str] | None = None,
                            older_than: float | None = None) -> int:
        """Leftovers of interrupted `write_tree` calls (`.tmp-<name>-…`, `.old-<name>-…`): those of
        the given folder names, or any older than `older_than` seconds."""
        root = self.path(prefix)
        if not root.is_dir():
            return 0
        removed = 0
        now = time.time()
        for p in root.iterdir():
            if not (p.name.startswith(".tmp-") or p.name.startswith(".old-")):
                continue
            mine = names is not None and any(p.name.startswith((f".tmp-{a}-", f".old-{a}-")) for a in names)
            try:
                old = older_than is not None and now - p.stat().st_mtime > older_than
            except FileNotFoundError:
                continue
            if mine or old:
                shutil.rmtree(p, ignore_errors=True)
                removed += 1
        return removed
