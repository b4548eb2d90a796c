"""The supervised connection to the gateway: connect -> Stop/Start RPCs -> the event stream, judged
healthy by login and events (and a periodic ding), reconnected with capped, jittered exponential
backoff; login, logout and scan events; the engine's ticks and the outbox poll. `WechatTransport`
is this plus the receiving (`inbound.py`) and sending (`outbound.py`) sides."""
from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import random
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from bot import metrics
from bot.settings import Settings
from bot.transport.outbox import Outbox
from bot.transport.wechat.client import (
    EXIT_NO_GATEWAY, EXIT_OK, EXIT_TOKEN_REFUSED, README_SECTION, TokenRefused, _describe, _load_wechaty, _make_client,
)
from bot.transport.wechat.inbound import Inbound
from bot.transport.wechat.outbound import Outbound

log = logging.getLogger(__name__)


@dataclasses.dataclass
class WechatOptions:
    """Knobs of the supervisor (not user settings; tests shorten them)."""
    startup_timeout: float = 30.0  # give up when no gateway answered for this long at start-up
    connect_timeout: float = 5.0  # TCP connect / unary RPC timeout
    backoff_base: float = 1.0
    backoff_max: float = 60.0
    tick_interval: float = 30.0
    outbox_poll_interval: float = 2.0  # how soon rows committed by another process (the CLI) go out
    liveness_interval: float = 60.0  # ding the gateway after this long without any event
    login_notice: float = 10.0  # warn when the gateway answered but is not logged in after this long
    login_notice_repeat: float = 300.0  # ... and again every this long while it stays so
    send_wait: float = 120.0  # how long a send waits for a (re)connection
    shutdown_flush: float = 10.0


@dataclasses.dataclass
class _Session:
    client: Any
    answered: bool = False  # the gateway accepted our token (Start RPC returned)
    logged_in: bool = False
    error: BaseException | None = None
    last_event: float = 0.0
    runner: asyncio.Task | None = None
    gateway_error: str = ""  # the last error event the gateway sent (its puppet's, one line)


class WechatTransport(Inbound, Outbound):
    """Supervised connection to the gateway + translation between Wechaty and the engine."""

    def __init__(self, settings: Settings, engine: Any, host: str, port: int,
                 options: WechatOptions | None = None) -> None:
        self.settings = settings
        self.engine = engine
        self.host, self.port = host, port
        self.endpoint = f"{host}:{port}"
        self.opts = options or WechatOptions()
        self.started_at = datetime.now(timezone.utc)
        self.inbox = Path(settings.data_dir) / "inbox"
        self.outbox = Outbox(self._send, min_gap=settings.send_min_gap_seconds,
                             per_minute=settings.send_per_minute)
        self._wx: SimpleNamespace | None = None
        self._session: _Session | None = None
        self._online = asyncio.Event()  # logged in on the current session
        self._stop = asyncio.Event()
        self._accepting = True
        self._rooms: set[str] = set()
        self._recent: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._self_name = ""
        self._inflight = 0  # message handlers running
        self._queued: set[int] = set()  # durable outbox rows queued in memory, not yet sent

    # -- lifecycle --------------------------------------------------------------------------
    def logged_in(self) -> bool:
        """The gateway's WeChat account is logged in on the current session (/readyz)."""
        return self._online.is_set()

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self) -> int:
        self._wx = _load_wechaty(Path(self.settings.data_dir) / "wechaty-cache")
        self._requeue_unsent()  # replies committed before a crash or stop, not yet sent
        ticker = asyncio.create_task(self._tick_loop(), name="wechat-tick")
        poller = asyncio.create_task(self._poll_loop(), name="wechat-outbox-poll")
        try:
            code = await self._supervise()
        finally:
            self._accepting = False
            for task in (ticker, poller):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            deadline = time.monotonic() + 5.0  # let messages being handled finish their turn
            while self._inflight and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            if self.outbox.pending:
                log.info("flushing %d queued messages", self.outbox.pending)
            await self.outbox.close(timeout=self.opts.shutdown_flush if self._online.is_set() else 1.0)
            await self._end_session()
        return code

    async def _supervise(self) -> int:
        t0 = time.monotonic()
        ever_answered = False
        failures = 0
        while not self._stop.is_set():
            session = await self._run_session()
            if self._stop.is_set():
                return EXIT_OK
            err = session.error
            if isinstance(err, TokenRefused):
                print(f"WeChat transport: the gateway at {self.endpoint} refused the token "
                      f"(WECHATY_PUPPET_SERVICE_TOKEN). Check it matches the gateway's token; see "
                      f"{README_SECTION}.", file=sys.stderr, flush=True)
                return EXIT_TOKEN_REFUSED
            ever_answered = ever_answered or session.answered
            if session.logged_in:
                failures = 0
            if not ever_answered and time.monotonic() - t0 >= self.opts.startup_timeout:
                print(f"WeChat transport: no Wechaty gateway answered at {self.endpoint} within "
                      f"{self.opts.startup_timeout:.0f} s (last error: {_describe(err)}). Is the gateway "
                      f"running, listening there, with TLS disabled? See {README_SECTION}.",
                      file=sys.stderr, flush=True)
                return EXIT_NO_GATEWAY
            failures += 1
            delay = min(self.opts.backoff_max, self.opts.backoff_base * 2 ** (failures - 1))
            delay = random.uniform(delay / 2, delay)
            if not ever_answered:
                delay = min(delay, max(0.1, self.opts.startup_timeout - (time.monotonic() - t0)))
            if session.logged_in or session.answered:
                metrics.RECONNECTS.inc()  # a connection the gateway had accepted was lost
                log.warning("gateway connection ended (%s); reconnecting in %.1f s", _describe(err), delay)
            else:
                log.info("gateway not available (%s); retrying in %.1f s", _describe(err), delay)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)
        return EXIT_OK

    async def _run_session(self) -> _Session:
        """One connection: probe, Stop/Start RPCs, then the event stream until it ends."""
        wx = self._wx
        assert wx is not None
        session = _Session(client=None)
        try:
            _reader, writer = await asyncio.wait_for(asyncio.open_connection(self.host, self.port),
                                                     self.opts.connect_timeout)
            writer.close()
        except (OSError, asyncio.TimeoutError) as exc:
            session.error = exc
            return session
        session.client = _make_client(wx, self, self.settings.wechaty_token, self.endpoint)
        self._session = session
        session.runner = asyncio.create_task(self._stream(session), name="wechat-stream")
        watchdog = asyncio.create_task(self._watchdog(session), name="wechat-watchdog")
        notices = asyncio.create_task(self._login_notices(session), name="wechat-login-notices")
        stopper = asyncio.create_task(self._stop.wait())
        try:
            await asyncio.wait({session.runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            watchdog.cancel()
            notices.cancel()
            stopper.cancel()
            runner = session.runner
            if runner.done() and not runner.cancelled():
                if runner.exception() is not None:
                    session.error = runner.exception()
                elif session.error is None:
                    session.error = EOFError("event stream ended")
            if not self._stop.is_set():  # on stop, run() flushes the outbox first, then ends it
                await self._end_session(session)
        return session

    async def _stream(self, session: _Session) -> None:
        wx = self._wx
        client = session.client
        await client.init_puppet()
        await client.init_puppet_event_bridge(client.puppet)
        puppet = client.puppet
        for event in ("heartbeat", "dong", "message", "login", "ready", "friendship", "logout", "scan"):
            puppet.on(event, lambda *_a, **_k: self._touch(session))
        puppet.on("scan", self._on_scan)
        puppet.on("error", lambda payload=None, *_a: self._on_gateway_error(session, payload))
        # python-wechaty acts on a client's first login only, and calls on_logout only after an RPC
        # that can fail once logged out: after the first login, the raw events say who is online.
        puppet.on("login", lambda payload=None, *_a: self._on_login_again(session, payload))
        puppet.on("logout", lambda *_a: self._on_logout(session))
        # What PuppetService.start() does, minus its blocking telnet "ping" and with timeouts.
        channel = wx.Channel(host=self.host, port=self.port)
        channel._authority = self.settings.wechaty_token  # the gateway reads the token from :authority
        puppet.channel = channel
        puppet._puppet_stub = wx.PuppetStub(channel)
        stub = puppet.puppet_stub
        try:
            try:  # Stop clears a stale event stream left by a previous (killed) client
                await asyncio.wait_for(stub.stop(), self.opts.connect_timeout * 3)
            except wx.GRPCError as exc:
                if exc.status == wx.Status.UNAUTHENTICATED:
                    raise
                log.info("Stop RPC failed (%s); starting anyway", exc.status.name)
            await asyncio.wait_for(stub.start(), 20.0)
        except wx.GRPCError as exc:
            if exc.status == wx.Status.UNAUTHENTICATED:
                raise TokenRefused(exc.message or "unauthenticated") from None
            raise
        session.answered = True
        session.last_event = time.monotonic()
        log.info("gateway %s answered; waiting for login", self.endpoint)
        await puppet._listen_for_event()

    async def _watchdog(self, session: _Session) -> None:
        """Ding the gateway when the stream has been silent; end the session if it stays silent."""
        interval = self.opts.liveness_interval
        while True:
            await asyncio.sleep(interval / 4)
            if not session.answered:
                continue
            silent = time.monotonic() - session.last_event
            if silent < interval:
                continue
            if silent >= interval * 2:
                log.warning("no event from the gateway for %.0f s; reconnecting", silent)
                session.error = TimeoutError("gateway silent")
                if session.runner is not None:
                    session.runner.cancel()
                return
            with contextlib.suppress(Exception):
                await asyncio.wait_for(session.client.puppet.puppet_stub.ding(data="liveness"),
                                       self.opts.connect_timeout)

    async def _login_notices(self, session: _Session) -> None:
        """Say so while the gateway answers but its WeChat account is not logged in (never logged
        in, or logged out): the bot cannot do anything until someone logs it in on the gateway."""
        waiting_since: float | None = None
        next_notice = self.opts.login_notice
        while True:
            await asyncio.sleep(min(1.0, self.opts.login_notice / 4))
            if not session.answered or self._online.is_set():
                waiting_since = None
                continue
            now = time.monotonic()
            if waiting_since is None:
                waiting_since, next_notice = now, self.opts.login_notice
            waited = now - waiting_since
            if waited < next_notice:
                continue
            last = f"; the gateway's last error: {session.gateway_error}" if session.gateway_error else ""
            log.warning("the gateway at %s is up but its WeChat account is not logged in (waited %.0f s)%s. "
                        "Scan the QR code the gateway prints, or see the gateway's log for why it cannot log in; "
                        "still waiting for the login", self.endpoint, waited, last)
            next_notice = waited + self.opts.login_notice_repeat

    async def _end_session(self, session: _Session | None = None) -> None:
        session = session or self._session
        if session is None:
            return
        if self._session is session:
            self._session = None
            self._online.clear()
        runner = session.runner
        if runner is not None and not runner.done():
            runner.cancel()
            with contextlib.suppress(BaseException):
                await runner
        puppet = getattr(session.client, "_puppet", None) if session.client is not None else None
        if puppet is not None:
            # Close the channel only: the Stop RPC would also stop the gateway's puppet.
            with contextlib.suppress(Exception):
                puppet._event_stream.remove_all_listeners()
            channel = getattr(puppet, "channel", None)
            if channel is not None:
                with contextlib.suppress(Exception):
                    channel.close()
                puppet.channel = None

    def _touch(self, session: _Session) -> None:
        session.last_event = time.monotonic()

    # -- events -----------------------------------------------------------------------------
    async def _on_login(self, client, contact) -> None:
        session = self._session
        if session is None or session.client is not client:
            return
        session.logged_in = True
        self._self_name = getattr(contact, "name", "") or ""
        self._online.set()
        log.info("logged in as %s", contact.contact_id)

    def _on_login_again(self, session: _Session, payload) -> None:
        """A login after a logout (someone scanned the gateway's new QR code): python-wechaty
        ignores it, so it is handled here; the first login goes through `_on_login`."""
        if self._session is not session or not session.logged_in or self._online.is_set():
            return
        contact_id = getattr(payload, "contact_id", None)
        if contact_id and session.client is not None:
            session.client.contact_id = contact_id  # what is_self() compares with
        self._online.set()
        log.info("logged in again as %s", contact_id)

    def _on_logout(self, session: _Session) -> None:
        if self._session is session and self._online.is_set():
            log.warning("gateway reports logout: its WeChat account is logged out; replies wait until it "
                        "logs in again (scan the new QR code the gateway prints)")
            self._online.clear()

    def _on_gateway_error(self, session: _Session, payload) -> None:
        """An error event from the gateway (its puppet's; python-wechaty also re-emits its own
        failures here): kept for the not-logged-in notice, never fatal."""
        data = getattr(payload, "data", None)
        if isinstance(data, str) and data.strip():
            session.gateway_error = data.strip().splitlines()[0][:200]

    def _on_scan(self, payload) -> None:
        status = getattr(getattr(payload, "status", None), "name", "?")
        if status in ("Waiting", "Timeout", "?"):
            log.warning("the gateway's WeChat account needs a QR scan (status %s); scan it on the gateway side",
                        status)
        else:  # Scanned, Confirmed, Cancel: someone is at it
            log.info("the gateway's login QR code: %s", status)

    # -- ticking ----------------------------------------------------------------------------
    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(self.opts.tick_interval)
            try:
                replies = await self.engine.tick(datetime.now(timezone.utc))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001
                log.exception("engine tick failed: %s", type(exc).__name__)
                continue
            if replies:
                log.info("tick: %d messages", len(replies))
                for reply in replies:
                    self._put(reply)

    async def _poll_loop(self) -> None:
        while True:
            await asyncio.sleep(self.opts.outbox_poll_interval)
            try:
                self._requeue_unsent()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001
                log.warning("outbox poll failed: %s", type(exc).__name__)
