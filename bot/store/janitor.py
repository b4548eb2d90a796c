"""Clean-up of files that no state references: what a crash at the wrong moment leaves behind.

- working files (`files/<user>/<random>.enc`, and `.tmp` files of an interrupted write) that no
  conversation references: their turn was never committed, or the deletion after the commit
  did not happen;
- temp package folders (`appeals/.tmp-…`, `.old-…`) of an interrupted package write.

Only what is older than `min_age_seconds` is removed, so a turn in flight (which writes a file
before it commits the state that references it) is never raced. Counts are logged, never names.
"""
from __future__ import annotations

import time

from bot.appeals import package as appeal_package


def clean(settings, store, min_age_seconds: float = 600.0) -> dict[str, int]:
    referenced, _ = store.file_references()
    now = time.time()
    files_dir = settings.data_dir / "files"
    removed = 0
    if files_dir.is_dir():
        for path in files_dir.rglob("*"):
            if not path.is_file():
                continue
            rel = path.relative_to(files_dir).as_posix()
            try:
                young = now - path.stat().st_mtime < min_age_seconds
            except FileNotFoundError:
                continue
            if rel not in referenced and not young:
                path.unlink(missing_ok=True)
                removed += 1
        for d in sorted((p for p in files_dir.iterdir() if p.is_dir()), reverse=True):
            try:
                d.rmdir()  # only when empty
            except OSError:
                pass
    temp = appeal_package.delete_temp_packages(settings, older_than=min_age_seconds)
    return {"files": removed, "temp_packages": temp}
