"""Harness for the WeChat end-to-end tests: the Node gateway (wechaty-puppet-mock behind a real
wechaty-puppet-service server) and the real bot process (`python -m bot run`).

The gateway speaks JSON lines: commands on its stdin, events on its stdout (see gateway/gateway.mjs).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import pytest

HERE = Path(__file__).resolve().parent
GATEWAY_DIR = HERE / "gateway"
REPO = HERE.parent.parent
TOKEN = "e2e-insecure-token"
BOT_NAME = "DayuBot"

Event = dict
Pred = Callable[[Event], bool]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def gateway_install() -> Path:
    """node_modules for the gateway: `npm ci` from the committed lock file when missing."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("Node.js and npm are needed for the WeChat end-to-end tests")
    if not (GATEWAY_DIR / "node_modules" / "wechaty-puppet-service" / "package.json").exists():
        proc = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=GATEWAY_DIR,
                              capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            pytest.fail(f"npm ci failed in {GATEWAY_DIR}:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return GATEWAY_DIR


class Gateway:
    """A gateway process; `events` is everything it printed, in order."""

    def __init__(self, port: int, log_dir: Path, token: str = TOKEN) -> None:
        self.port = port
        self.token = token
        self.endpoint = f"127.0.0.1:{port}"
        self.events: list[Event] = []
        self._cond = threading.Condition()
        self._stderr = open(log_dir / f"gateway-{port}-{int(time.time() * 1000)}.err", "w")
        env = dict(os.environ, GW_PORT=str(port), GW_TOKEN=token, WECHATY_LOG="warn")
        self.proc = subprocess.Popen(["node", str(GATEWAY_DIR / "gateway.mjs")], cwd=GATEWAY_DIR, env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
                                     text=True, encoding="utf-8")
        threading.Thread(target=self._read, daemon=True).start()
        self.info = self.wait(lambda e: e["event"] == "listening", timeout=30, since=0)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
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

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self._write({"cmd": "quit"})
                self.proc.wait(5)
            except (OSError, subprocess.TimeoutExpired, ValueError):
                self.proc.kill()
                self.proc.wait(5)
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

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
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

    def start(port: int | None = None, token: str = TOKEN) -> Gateway:
        gw = Gateway(port or free_port(), e2e_tmp, token)
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
