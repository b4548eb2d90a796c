"""The console's terminal: chat lines, log lines and the input prompt on one screen.

Something can arrive while the person is typing (a reminder, an operator's status note, a log
warning): it is printed on its own line above the prompt, and the prompt with what was typed so
far is drawn again, so nothing lands in the middle of a chat line.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import threading
from datetime import datetime, timezone

from bot.timefmt import local_minutes

try:  # line editing for input(), and what was typed so far for redrawing the prompt
    import readline
except ImportError:  # pragma: no cover - no readline on this platform
    readline = None

_CLEAR_LINE = "\r\x1b[K"


class Screen:
    """Everything the console writes goes through `say` (stdout) or `note` (stderr)."""

    def __init__(self, out=None, err=None, prompt: str = "你> "):
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.prompt = prompt
        self._prompting = False  # input() shows the prompt now
        self._lock = threading.RLock()  # log lines can come from worker threads

    def ask(self) -> str:
        """One line typed by the person (blocking: run it in a thread). EOFError at the end."""
        with self._lock:
            self._prompting = True
        try:
            return input(self.prompt)
        finally:
            with self._lock:
                self._prompting = False

    async def read(self) -> str:
        """`ask` in a daemon thread: Ctrl-C or /quit never waits for a line nobody will type."""
        loop = asyncio.get_running_loop()
        done = loop.create_future()

        def settle(value, exc) -> None:
            if done.done():  # cancelled meanwhile: the line is dropped
                return
            if exc is not None:
                done.set_exception(exc)
            else:
                done.set_result(value)

        def run() -> None:
            try:
                value, exc = self.ask(), None
            except BaseException as e:  # noqa: BLE001 - EOFError and the like, handed to the loop
                value, exc = None, e
            try:
                loop.call_soon_threadsafe(settle, value, exc)
            except RuntimeError:  # the loop is gone: the console has ended
                pass

        threading.Thread(target=run, name="console-input", daemon=True).start()
        return await done

    @contextlib.contextmanager
    def terminal_kept(self):
        """Give the terminal back as it was (echo, line mode) even if the process ends while the
        line editor holds it, e.g. on Ctrl-C while a line is being typed."""
        saved = None
        try:
            import termios

            fd = sys.stdin.fileno()
            saved = (termios, fd, termios.tcgetattr(fd)) if os.isatty(fd) else None
        except (ImportError, OSError, ValueError, AttributeError):
            pass
        try:
            yield
        finally:
            if saved is not None:
                termios_, fd, attrs = saved
                try:
                    termios_.tcsetattr(fd, termios_.TCSADRAIN, attrs)
                except OSError:
                    pass

    def say(self, text: str) -> None:
        self._write(self.out, text)

    def note(self, text: str) -> None:
        self._write(self.err, text)

    def _write(self, stream, text: str) -> None:
        with self._lock:
            redraw = self._prompting and _is_tty(self.out)
            if redraw:  # wipe the prompt line, print above it, draw it again
                self.out.write(_CLEAR_LINE)
                self.out.flush()
            stream.write(text + "\n")
            stream.flush()
            if redraw:
                typed = readline.get_line_buffer() if readline is not None else ""
                self.out.write(self.prompt + typed)
                self.out.flush()


def _is_tty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class ScreenLogHandler(logging.Handler):
    """Log records on the screen's stderr side, never inside a chat line or the prompt."""

    def __init__(self, screen: Screen, level=logging.NOTSET):
        super().__init__(level)
        self.screen = screen

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.screen.note(self.format(record))
        except Exception:  # noqa: BLE001 - logging must never break the chat
            self.handleError(record)


class LocalTimeFormatter(logging.Formatter):
    """Log lines stamped like every time the console shows: the `timezone` setting, to the minute."""

    def __init__(self, settings=None):
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.settings = settings

    def formatTime(self, record: logging.LogRecord, datefmt=None) -> str:
        return local_minutes(datetime.fromtimestamp(record.created, timezone.utc), self.settings)


def route_logs(screen: Screen, verbose: bool, level: str = "INFO", settings=None) -> None:
    """The console's logging: through the screen, at WARNING unless `verbose` (then `level`).

    The root handlers `setup_logging` installed are swapped for one on the screen, keeping their
    filters (the redaction of personal data)."""
    from bot.privacy import install_log_redaction

    root = logging.getLogger()
    old = list(root.handlers)
    handler = ScreenLogHandler(screen)
    handler.setFormatter(LocalTimeFormatter(settings))
    for h in old:
        for f in h.filters:
            handler.addFilter(f)
        root.removeHandler(h)
    root.addHandler(handler)
    wanted = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    if not isinstance(wanted, int):
        wanted = logging.INFO
    root.setLevel(wanted if verbose else max(wanted, logging.WARNING))
    install_log_redaction()  # adds the redacting filter if the old handler had none
    logging.captureWarnings(True)  # Python's warnings too, instead of straight onto the terminal
