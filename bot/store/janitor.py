"""Clean-up of files that no state references: what a crash at the wrong moment leaves behind.

- working files (`files/<user>/<random>.enc`, and `.tmp` files of an interrupted write) that no
  conversation references: their turn was never committed, or the deletion after the commit
  did not happen;
- temp package folders (`appeals/.tmp-…`, `.old-…`) of an interrupted package write (on disk only:
  the database's file area writes a package in one transaction).

Only what is older than `min_age_seconds` is removed, so a turn in flight (which writes a file
before it commits the state that references it) is never raced. Counts are logged, never names.
"""
from __future__ import annotations


def clean(store, min_age_seconds: float = 600.0) -> dict[str, int]:
    files = store.files
    # Files first, then the references: a file listed was committed (in the database) together with
    # the conversation that references it, so that reference is seen by the later read, even when
    # another process commits in between.
    listed = files.files_with_age("files")
    referenced, _ = store.file_references()
    removed = 0
    for key, age in listed:
        if key.removeprefix("files/") not in referenced and age >= min_age_seconds:
            files.delete(key)
            removed += 1
    files.prune_empty("files")
    temp = files.delete_temp_folders("appeals", older_than=min_age_seconds)
    return {"files": removed, "temp_packages": temp}
