"""`python -m bot replay` that ends itself (os._exit, like kill -9) at a named point of a turn.

Test-only: CRASH_AT="point:n" ends the process the n-th time `point` is reached. Points:
  before_commit / after_commit   around the turn's one transaction (bot.engine)
  after_send                     a reply printed, not yet marked sent (bot.engine.deliver)
  package_written                确认: the package is written, the turn not yet committed
  file_saved                     a photo/video working copy is written, the turn not yet committed
  after_smtp                     the SMTP server accepted the appeal email, not yet marked sent
No production code knows of this: the points are patched in here.
"""
import os
import sys

import bot.appeals.sender
import bot.engine
from bot.appeals import package
from bot.appeals.crypto import Vault

point, _, nth = os.environ.get("CRASH_AT", ":0").partition(":")
count = {"n": 0}


def maybe_crash(name: str) -> None:
    if name == point:
        count["n"] += 1
        if count["n"] == int(nth):
            sys.stdout.flush()
            os._exit(70)


bot.engine._crash_point = maybe_crash
bot.appeals.sender._crash_point = maybe_crash  # after_smtp: accepted by the server, not marked sent

_write_package = package.write_package


def write_package(*args, **kwargs):
    result = _write_package(*args, **kwargs)
    maybe_crash("package_written")
    return result


package.write_package = write_package

_vault_write = Vault.write


def vault_write(self, path, data):
    result = _vault_write(self, path, data)
    if "/files/" in str(path):
        maybe_crash("file_saved")
    return result


Vault.write = vault_write

if __name__ == "__main__":
    from bot.cli import main

    sys.exit(main(["replay", "-", *sys.argv[1:]]))
