"""`python -m bot replay` that ends itself (os._exit, like kill -9) at a named point of a turn.

Test-only: CRASH_AT="point:n" ends the process the n-th time `point` is reached, and
CRASH_AT="point@id" kills it (SIGKILL, a real kill -9) when `point` is reached in the turn of
message `id`. Points:
  before_commit / after_commit   around the turn's one transaction (bot.engine)
  claimed                        replies claimed for sending, none sent yet (bot.engine.deliver)
  after_send                     a reply printed, not yet marked sent (bot.engine.deliver)
  package_written                确认: the package is written, the turn not yet committed
  file_saved                     a photo/video working copy is written, the turn not yet committed
  after_smtp                     the SMTP server accepted the appeal email, not yet marked sent
No production code knows of this: the points are patched in here.
"""
import os
import signal
import sys

import bot.appeals.sender
import bot.engine
from bot.appeals import package
from bot.store.files import DiskFiles
from bot.store.postgres import DbFiles

SPEC = os.environ.get("CRASH_AT", ":0")
point, _, nth = SPEC.partition(":")
point, _, target = point.partition("@")
count = {"n": 0}
current = {"message_id": None}


def maybe_crash(name: str) -> None:
    if name != point:
        return
    if target:
        if current["message_id"] == target:
            sys.stdout.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        return
    count["n"] += 1
    if count["n"] == int(nth):
        sys.stdout.flush()
        os._exit(70)


_handle = bot.engine.Engine.handle


async def handle(self, msg):
    current["message_id"] = msg.message_id
    return await _handle(self, msg)


bot.engine.Engine.handle = handle


bot.engine._crash_point = maybe_crash
bot.appeals.sender._crash_point = maybe_crash  # after_smtp: accepted by the server, not marked sent

_write_package = package.write_package


def write_package(*args, **kwargs):
    result = _write_package(*args, **kwargs)
    maybe_crash("package_written")
    return result


package.write_package = write_package

def crash_after_file(cls):
    original = cls.write

    def write(self, key, token):
        result = original(self, key, token)
        if key.startswith("files/"):
            maybe_crash("file_saved")
        return result

    cls.write = write


crash_after_file(DiskFiles)  # SQLite: files on disk
crash_after_file(DbFiles)  # PostgreSQL: rows written in the turn's transaction

if __name__ == "__main__":
    from bot.cli import main

    sys.exit(main(["replay", "-", *sys.argv[1:]]))
