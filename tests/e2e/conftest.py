"""Harness for the WeChat end-to-end tests: the shipped gateway (deploy/gateway/gateway.mjs, a real
wechaty-puppet-service server) with WECHATY_PUPPET=wechaty-puppet-mock, and the real bot process
(`python -m bot run`).

With the mock puppet the gateway speaks JSON lines: commands on its stdin, events on its stdout among
its log lines (see the "mock puppet" section of gateway.mjs).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import pytest

from session_server import free_port

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
GATEWAY_DIR = REPO / "deploy" / "gateway"
# packages the tests load from deploy/gateway/node_modules (npm ci from its package-lock.json)
GATEWAY_PACKAGES = ("wechaty-puppet-service", "wechaty-puppet-mock", "wechaty-puppet-wechat4u", "memory-card",
                    "qrcode-terminal")
TOKEN = "e2e-insecure-token"
BOT_NAME = "DayuBot"

Event = dict
Pred = Callable[[Event], bool]


@pytest.fixture(scope="session")
def gateway_install() -> Path:
    """node_modules for the gateway: `npm ci` from the committed lock file when missing."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("Node.js and npm are needed for the WeChat end-to-end tests")
    if not all((GATEWAY_DIR / "node_modules" / p / "package.json").exists() for p in GATEWAY_PACKAGES):
        proc = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=GATEWAY_DIR,
                              capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            pytest.fail(f"npm ci failed in {GATEWAY_DIR}:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return GATEWAY_DIR


def gateway_env(token: str, endpoint: str, data_dir: Path, puppet: str = "wechaty-puppet-mock",
                extra: dict[str, str] | None = None) -> dict[str, str]:
    """The gateway's environment: nothing WECHATY_* inherited from ours."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("WECHATY_") and k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
    env.update({"WECHATY_PUPPET": puppet, "WECHATY_PUPPET_SERVICE_TOKEN": token,
                "WECHATY_PUPPET_SERVICE_ENDPOINT": endpoint, "WECHATY_GATEWAY_DATA_DIR": str(data_dir),
                "WECHATY_LOG": "warn"})
    env.update(extra or {})
    return env


def terminate(proc: subprocess.Popen, timeout: float) -> int:
    """SIGTERM, as `docker stop` sends it, then SIGKILL after `timeout`; returns the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return proc.returncode

class Gateway:
    """A deploy/gateway process (the mock puppet unless told otherwise); `events` is every JSON event
    it printed, in order (the mock's), `lines` every line of its stdout (log lines, the QR code)."""

    def __init__(self, port: int, log_dir: Path, token: str = TOKEN, data_dir: Path | None = None,
                 extra_env: dict[str, str] | None = None, puppet: str = "wechaty-puppet-mock") -> None:
        self.port = port
        self.token = token
        self.puppet = puppet
        self.endpoint = f"127.0.0.1:{port}"
        # one session dir per port: a gateway restarted on the same port is the same account
        self.data_dir = data_dir or log_dir / f"gateway-data-{port}"
        self.events: list[Event] = []
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self.stderr_path = log_dir / f"gateway-{port}-{int(time.time() * 1000)}.err"
        self._stderr = open(self.stderr_path, "w")
        env = gateway_env(token, self.endpoint, self.data_dir, puppet, extra=extra_env)
        self.proc = subprocess.Popen(["node", str(GATEWAY_DIR / "gateway.mjs")], cwd=GATEWAY_DIR, env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
                                     text=True, encoding="utf-8")
        threading.Thread(target=self._read, daemon=True).start()
        self.info: dict = {}
        if puppet == "wechaty-puppet-mock":  # only the mock speaks JSON events
            self.info = self.wait(lambda e: e["event"] == "listening", timeout=30, since=0)
        else:
            self.wait_line(" served on ", timeout=30)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if not isinstance(event, dict) or "event" not in event:
                continue
            with self._cond:
                self.events.append(event)
                self._cond.notify_all()
        with self._cond:
            self.events.append({"event": "exited"})
            self._cond.notify_all()

    # -- events ------------------------------------------------------------------------------
    def mark(self) -> int:
        with self._cond:
            return len(self.events)

    def wait(self, pred: Pred, timeout: float = 15.0, since: int | None = None) -> Event:
        """The first event at or after index `since` (default: now) matching `pred`."""
        start = self.mark() if since is None else since
        deadline = time.monotonic() + timeout
        with self._cond:
            i = start
            while True:
                while i < len(self.events):
                    if pred(self.events[i]):
                        return self.events[i]
                    i += 1
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no matching gateway event within {timeout:.0f} s; "
                                       f"last events: {self.events[-5:]}")
                self._cond.wait(left)

    def wait_line(self, text: str, timeout: float = 15.0, since: int = 0) -> int:
        """Index of the first stdout line at or after line `since` containing `text`."""
        deadline = time.monotonic() + timeout
        with self._cond:
            i = since
            while True:
                while i < len(self.lines):
                    if text in self.lines[i]:
                        return i
                    i += 1
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no gateway line with {text!r} within {timeout:.0f} s; "
                                       f"last lines: {self.lines[-8:]}")
                self._cond.wait(left)

    def find(self, pred: Pred, since: int = 0) -> list[Event]:
        with self._cond:
            return [e for e in self.events[since:] if pred(e)]

    def said(self, to: str | None = None, since: int = 0) -> list[Event]:
        return self.find(lambda e: e["event"] == "bot_said" and (to is None or e["to"] == to), since)

    def collect(self, to: str, since: int, first_timeout: float = 20.0, quiet: float = 0.6) -> list[Event]:
        """Replies to `to` after `since`: wait for the first, then until `quiet` s pass without more."""
        self.wait(lambda e: e["event"] == "bot_said" and e["to"] == to, timeout=first_timeout, since=since)
        n = len(self.said(to, since))
        while True:
            time.sleep(quiet)
            m = len(self.said(to, since))
            if m == n:
                return self.said(to, since)
            n = m

    # -- commands ----------------------------------------------------------------------------
    def send(self, cmd: str, **kw) -> Event:
        """Send a command; returns its `sent` event (with the message id)."""
        since = self.mark()
        self._write({"cmd": cmd, **kw})
        return self.wait(lambda e: e["event"] in ("sent", "error"), timeout=10, since=since)

    def _write(self, obj: dict) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(obj, ensure_ascii=False) + "\n")
        self.proc.stdin.flush()

    def user(self, name: str) -> str:
        return self.info["users"][name]

    def terminate(self, timeout: float = 10.0) -> int:
        """SIGTERM, as `docker stop` sends it; returns the exit code."""
        return terminate(self.proc, timeout)

    def stderr(self) -> str:
        if not self._stderr.closed:
            self._stderr.flush()
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def close(self) -> None:
        if self.proc.poll() is None and self.puppet != "wechaty-puppet-mock":
            self.terminate()
        if self.proc.poll() is None:
            try:
                self._write({"cmd": "quit"})
                self.proc.wait(5)
            except (OSError, subprocess.TimeoutExpired, ValueError):
                self.proc.kill()
                self.proc.wait(5)
        if not self._stderr.closed:
            self._stderr.close()


class Bot:
    """The real bot: `python -m bot run --data-dir DIR` against a gateway."""

    def __init__(self, data_dir: Path, endpoint: str, log_dir: Path, token: str = TOKEN,
                 extra_env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.log_path = log_dir / f"bot-{int(time.time() * 1000)}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("BOT_", "WECHATY_"))}
        env.update({
            "WECHATY_PUPPET_SERVICE_TOKEN": token,
            "WECHATY_PUPPET_SERVICE_ENDPOINT": endpoint,
            "BOT_KEY_FILE": str(data_dir.parent / "keys" / "appeal.key"),
            "BOT_APPEAL_EMAIL": "appeals@example.invalid",
            # fast but still rate-limited sending; the defaults (1 s, 40/min) would dominate the run time
            "BOT_SEND_MIN_GAP_SECONDS": "0.2",
            "BOT_SEND_PER_MINUTE": "600",
            "BOT_LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
        })
        env.update(extra_env or {})
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "bot", "run", "--data-dir", str(data_dir)],
                                     cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT)

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def wait_connected(self, gw: Gateway, since: int, timeout: float = 45.0) -> None:
        """Until the gateway saw this bot's event stream open (messages before that are lost)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                gw.wait(lambda e: e["event"] == "client_stream_open", timeout=0.5, since=since)
                return
            except TimeoutError:
                if self.proc.poll() is not None:
                    raise AssertionError(f"bot exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
                if time.monotonic() > deadline:
                    raise AssertionError(f"bot did not connect within {timeout:.0f} s:\n{self.log()[-3000:]}")

    def wait_log(self, text: str, timeout: float = 30.0, count: int = 1) -> str:
        """Until `text` occurs `count` times in the bot's log (the bot must stay alive meanwhile)."""
        deadline = time.monotonic() + timeout
        while True:
            log = self.log()
            if log.count(text) >= count:
                return log
            if self.proc.poll() is not None:
                raise AssertionError(f"bot exited with {self.proc.returncode} before logging {text!r}:\n{log[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"bot did not log {text!r} {count}x within {timeout:.0f} s:\n{log[-3000:]}")
            time.sleep(0.2)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout: float = 15.0) -> int:
        terminate(self.proc, timeout)
        if not self._log.closed:
            self._log.close()
        return self.proc.returncode


@pytest.fixture(scope="module")
def e2e_tmp(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("wechat-e2e")


@pytest.fixture(scope="module")
def start_gateway(gateway_install, e2e_tmp):
    """Factory: start a gateway (on a given port, e.g. to restart one); all are closed at the end."""
    started: list[Gateway] = []

    def start(port: int | None = None, token: str = TOKEN, **kw) -> Gateway:
        gw = Gateway(port or free_port(), e2e_tmp, token, **kw)
        started.append(gw)
        return gw

    yield start
    for gw in started:
        gw.close()


@pytest.fixture(scope="module")
def start_bot(e2e_tmp):
    """Factory: start the real bot process; all are stopped at the end."""
    started: list[Bot] = []

    def start(data_dir: Path, endpoint: str, **kw) -> Bot:
        bot = Bot(data_dir, endpoint, e2e_tmp, **kw)
        started.append(bot)
        return bot

    yield start
    for bot in started:
        bot.stop()
