"""The console chat as a person sees it: `python -m bot chat` in a pseudo-terminal (pty), its
screen read as it is written, lines typed into it."""
from __future__ import annotations

import fcntl
import os
import pty
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _own_terminal() -> None:
    """In the child: a session of its own with the pty as its controlling terminal, as in a real
    terminal window (so Ctrl-C typed into it is a SIGINT to the console)."""
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class ConsolePty:
    def __init__(self, args: list[str], env: dict[str, str], stderr_path: Path):
        master, slave = pty.openpty()
        self.initial_modes = termios.tcgetattr(slave)  # the terminal as a shell would leave it
        self._err = open(stderr_path, "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "bot", "chat", *args], cwd=ROOT, env=env,
                                     stdin=slave, stdout=slave, stderr=self._err, close_fds=True,
                                     preexec_fn=_own_terminal)
        os.close(slave)
        self.master = master
        self._buf = bytearray()
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 4096)
            except OSError:  # the child closed the terminal
                return
            if not chunk:
                return
            with self._lock:
                self._buf += chunk

    @property
    def screen(self) -> str:
        with self._lock:
            return self._buf.decode("utf-8", "replace")

    def wait_for(self, text: str, timeout: float = 30.0, start: int = 0) -> int:
        """Wait until `text` is on the screen (after offset `start`); returns where it ends."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            at = self.screen.find(text, start)
            if at >= 0:
                return at + len(text)
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"{text!r} not on the console's screen within {timeout}s:\n{self.screen}")

    def type(self, line: str) -> None:
        os.write(self.master, (line + "\n").encode("utf-8"))

    def close(self, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.type("/quit")
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(2)
        try:
            os.close(self.master)
        except OSError:
            pass
        self._err.close()
        return self.proc.returncode
