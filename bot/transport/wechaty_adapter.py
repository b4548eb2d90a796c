"""WeChat transport: a python-wechaty client of a Wechaty puppet-service gateway.

This is the only module of the bot that imports wechaty, and it imports it lazily (inside
`run_wechat`), so the rest of the bot and its tests never load it.

Pins (python-wechaty is unmaintained upstream; last release 0.10.7, 2022-11) - verified together
on Python 3.11 against the Node gateway in deploy/gateway (wechaty-puppet-service 1.19.9):
    wechaty==0.10.7 wechaty-puppet==0.4.23 wechaty-puppet-service==0.8.10 wechaty-grpc==0.20.19
    betterproto==1.2.5 grpclib==0.4.9 pyee>=8.2,<12 urllib3<2

What the library gets wrong, and what this module does instead (docs/wechat.md has the long form):
- Python 3.11 rejects `WechatyOptions.puppet_options = PuppetOptions()` (an unhashable dataclass
  default): `PuppetOptions.__hash__` is patched before `wechaty` is imported.
- It imports the deprecated `telnetlib` (a DeprecationWarning, fatal under -W error; gone in 3.13).
- `Wechaty.start()` swallows errors (exit 0 on a wrong token or no gateway), sleeps a fixed 60 s on
  network errors and returns quietly when the event stream ends. We do not call it: a supervisor
  here runs connect -> Stop/Start RPC -> event stream itself, judges health by login and events
  (and a periodic ding/dong), and reconnects with capped, jittered exponential backoff.
- Its loggers each carry their own console handler at INFO and print message texts, friend
  greetings and the token: they are muted. We log ids, kinds and lengths only.
- On login it probes 127.0.0.1:5000 (its plugin web server) and fails the login if the port is
  taken; it also opens a scheduler: the plugin manager is disabled.
- Images/files over ~20 KB come back as a UUID FileBox python cannot read: we use the
  MessageImageStream/MessageFileStream RPCs for those.
- `msg.age()` is wrong upstream; we compare the payload timestamp (what `msg.date()` reads).
"""
from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import dataclasses
import json
import logging
import os
import random
import secrets
import signal
import sys
import time
import warnings
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any, AsyncIterator, Awaitable, Callable

from bot.messages import Attachment, AttachmentKind, Incoming, Outgoing
from bot.settings import Settings
from bot.transport.outbox import Outbox

log = logging.getLogger(__name__)

README_SECTION = 'the README section "Running a Wechaty puppet-service gateway" (docs/wechat.md)'

EXIT_OK = 0
EXIT_CONFIG = 2  # token or endpoint missing / malformed
EXIT_NO_GATEWAY = 3  # no gateway answered within the start-up timeout
EXIT_TOKEN_REFUSED = 4  # the gateway refused the token

AT_SEPARATOR = "\u2005"  # what WeChat puts after "@name"
STALE_GRACE = timedelta(seconds=5)  # clock skew allowed between the gateway and us

TOO_LARGE_TEXT = ("您发送的文件超过 {mb} MB，无法接收。请压缩或截取关键部分后重新发送；"
                  "如果仍然过大，可以改用邮件提交材料。")
DOWNLOAD_FAILED_TEXT = "文件接收失败，请稍后重新发送。"
ENGINE_FAILED_TEXT = "抱歉，系统暂时出了点问题，请稍后再发一次。"


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


class AttachmentTooLarge(Exception):
    pass


class TokenRefused(Exception):
    pass


# -- settings check ---------------------------------------------------------------------------
def check_settings(settings: Settings) -> tuple[str, int] | str:
    """(host, port) of the gateway, or an error message for stderr."""
    missing = [name for name, value in (("WECHATY_PUPPET_SERVICE_TOKEN (wechaty_token)", settings.wechaty_token),
                                        ("WECHATY_PUPPET_SERVICE_ENDPOINT (wechaty_endpoint)",
                                         settings.wechaty_endpoint)) if not value.strip()]
    if missing:
        return (f"WeChat transport: missing {' and '.join(missing)}. The bot connects to a Wechaty "
                "puppet-service gateway at host:port (TLS disabled: the Python client speaks plaintext "
                f"gRPC only) with that gateway's token. See {README_SECTION}.")
    endpoint = settings.wechaty_endpoint.strip()
    if "://" in endpoint:
        endpoint = endpoint.split("://", 1)[1]
    host, sep, port = endpoint.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        return (f"WeChat transport: wechaty_endpoint must be host:port, got {settings.wechaty_endpoint!r}. "
                f"See {README_SECTION}.")
    return host.strip("[]"), int(port)


# -- lazy wechaty import ----------------------------------------------------------------------
_WX: SimpleNamespace | None = None


def _load_wechaty(cache_dir: Path) -> SimpleNamespace:
    """Import python-wechaty with the 3.11 shim, quietly, and mute its loggers."""
    global _WX
    if _WX is not None:
        return _WX
    # wechaty creates its cache dir (default ./.wechaty) at import time.
    cache_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.environ.setdefault("CACHE_DIR", str(cache_dir))
    before = set(logging.root.manager.loggerDict)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)  # telnetlib, pkg_resources...
        import wechaty_puppet.schemas.puppet as puppet_schemas
        puppet_schemas.PuppetOptions.__hash__ = object.__hash__  # type: ignore[assignment,method-assign]
        import betterproto
        from grpclib.client import Channel
        from grpclib.const import Status
        from grpclib.exceptions import GRPCError, StreamTerminatedError
        import wechaty_puppet_service  # noqa: F401 - wechaty imports it lazily; load its loggers now
        from wechaty import Wechaty, WechatyOptions
        from wechaty_grpc.wechaty import PuppetStub
        from wechaty_grpc.wechaty.puppet import ImageType
        from wechaty_puppet import FileBox, FriendshipType, MessageType
    _mute_loggers(set(logging.root.manager.loggerDict) - before)
    kinds: dict[Any, AttachmentKind | str] = {
        MessageType.MESSAGE_TYPE_TEXT: "text",
        MessageType.MESSAGE_TYPE_IMAGE: "image",
        MessageType.MESSAGE_TYPE_VIDEO: "video",
        MessageType.MESSAGE_TYPE_ATTACHMENT: "file",
    }
    _WX = SimpleNamespace(
        Wechaty=Wechaty, WechatyOptions=WechatyOptions, FileBox=FileBox, MessageType=MessageType,
        FriendshipType=FriendshipType, ImageType=ImageType, PuppetStub=PuppetStub, Channel=Channel,
        GRPCError=GRPCError, Status=Status, StreamTerminatedError=StreamTerminatedError,
        betterproto=betterproto, kinds=kinds,
    )
    return _WX


def _mute_loggers(names) -> None:
    """wechaty_puppet.get_logger() gives each library logger its own INFO console handler (and a
    file handler with WECHATY_LOG_FILE); they log message texts, greetings and the token."""
    for name in names:
        if name == "bot" or name.startswith("bot."):
            continue
        lg = logging.getLogger(name)
        if lg.handlers or not lg.propagate:
            for handler in lg.handlers:
                with contextlib.suppress(Exception):
                    handler.close()
            lg.handlers = [logging.NullHandler()]
            lg.propagate = False
            lg.setLevel(logging.CRITICAL + 1)


def _make_client(wx: SimpleNamespace, transport: "WechatTransport", token: str, endpoint: str):
    """A Wechaty instance whose callbacks go to `transport` and whose plugin manager is off."""

    class Client(wx.Wechaty):  # type: ignore[misc,name-defined]
        async def on_login(self, contact) -> None:
            await transport._on_login(self, contact)

        async def on_message(self, msg) -> None:
            await transport._on_message(self, msg)

        async def on_friendship(self, friendship) -> None:
            await transport._on_friendship(self, friendship)

    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    options = wx.WechatyOptions(token=token, endpoint=endpoint, scheduler=AsyncIOScheduler())
    client = Client(options)

    async def no_plugins() -> None:
        return None

    client._plugin_manager.start = no_plugins  # no web server on :5000, no scheduler
    return client


def _utc_from_timestamp(ts: float) -> datetime:
    if ts > 2145888000:  # milliseconds (same rule as wechaty's timestamp_to_date)
        ts = ts / 1000
    return datetime.fromtimestamp(ts, tz=timezone.utc)


def _sniff_extension(path: Path, kind: str) -> str:
    try:
        import filetype  # project dependency; optional here
        guess = filetype.guess(str(path))
        if guess is not None:
            return "." + guess.extension
    except Exception:  # noqa: BLE001 - sniffing is best effort
        pass
    return {"image": ".img", "video": ".video"}.get(kind, ".bin")


@dataclasses.dataclass
class _Session:
    client: Any
    answered: bool = False  # the gateway accepted our token (Start RPC returned)
    logged_in: bool = False
    error: BaseException | None = None
    last_event: float = 0.0
    runner: asyncio.Task | None = None
    gateway_error: str = ""  # the last error event the gateway sent (its puppet's, one line)


class WechatTransport:
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

    async def _on_message(self, client, msg) -> None:
        mid = msg.message_id
        self._inflight += 1
        try:
            await self._handle_message(client, msg)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - one bad message must not kill the stream
            log.exception("message %s failed: %s", mid, type(exc).__name__)
        finally:
            self._inflight -= 1

    async def _handle_message(self, client, msg) -> None:
        wx = self._wx
        mid = msg.message_id
        if not self._accepting or mid in self._recent:
            return
        self._remember(mid)
        if msg.is_self():
            return
        payload = msg.payload
        at = _utc_from_timestamp(float(payload.timestamp or 0))
        if at < self.started_at - STALE_GRACE:
            log.info("skip message %s from before start (%s)", mid, at.isoformat(timespec="seconds"))
            return
        mtype = msg.type()
        kind = wx.kinds.get(mtype)
        if kind is None:
            log.info("ignore message %s of type %s", mid, getattr(mtype, "name", mtype))
            return
        room = msg.room()
        talker = msg.talker()
        sender = talker.contact_id
        chat = room.room_id if room is not None else sender
        if room is not None:
            self._rooms.add(chat)  # room filtering (modes, allow-list) is the engine's
        text, mention = "", False
        if kind == "text":
            text = msg.text() or ""
            if room is not None:
                mention = bool(await msg.mention_self())
                text = await msg.mention_text()
                if not mention and self._self_name and f"@{self._self_name}" in text:
                    mention = True  # a typed @name without mention ids
                    text = text.replace(f"@{self._self_name}", "", 1)
                text = text.strip()
        attachment = None
        if kind != "text":
            try:
                path = await self._download(client, msg, kind)
            except AttachmentTooLarge as exc:
                log.info("message %s: %s over the %s MB cap (%s)", mid, kind, self.settings.max_attachment_mb, exc)
                if room is None:
                        self.outbox.put(Outgoing(chat=chat, to=sender,
                                             text=TOO_LARGE_TEXT.format(mb=_fmt_mb(self.settings.max_attachment_mb))))
                return
            except Exception as exc:  # noqa: BLE001
                log.warning("message %s: %s download failed: %s", mid, kind, type(exc).__name__)
                if room is None:
                    self.outbox.put(Outgoing(chat=chat, to=sender, text=DOWNLOAD_FAILED_TEXT))
                return
            attachment = Attachment(path=path, kind=kind)  # type: ignore[arg-type]
        incoming = Incoming(message_id=mid, chat=chat, sender=sender, text=text, at=at,
                            sender_name=getattr(talker, "name", "") or "", room=room is not None,
                            mention=mention, attachment=attachment)
        log.info("in %s kind=%s room=%s mention=%s len=%d", mid, kind, incoming.room, mention,
                 len(text) if kind == "text" else (attachment.path.stat().st_size if attachment else 0))
        try:
            replies = await self.engine.handle(incoming)
        except Exception as exc:  # noqa: BLE001
            log.exception("engine failed on message %s: %s", mid, type(exc).__name__)
            if room is None or mention:
                self.outbox.put(Outgoing(chat=chat, to=sender, mention=room is not None, text=ENGINE_FAILED_TEXT))
            return
        finally:
            # The engine keeps what it needs (encrypted, elsewhere); the downloaded copy is ours.
            if attachment is not None:
                with contextlib.suppress(OSError):
                    attachment.path.unlink(missing_ok=True)
        for reply in replies or []:
            self._put(reply)
        if replies:
            log.info("out %s: %d replies", mid, len(replies))

    def _remember(self, mid: str) -> None:
        self._recent[mid] = None
        while len(self._recent) > 4096:
            self._recent.popitem(last=False)

    async def _on_friendship(self, client, friendship) -> None:
        wx = self._wx
        fid = friendship.friendship_id
        try:
            if friendship.type() != wx.FriendshipType.FRIENDSHIP_TYPE_RECEIVE:
                return
            hello = (friendship.hello() or "").casefold()
            keywords = [k.casefold() for k in self.settings.friend_keywords if k.strip()]
            if not any(k in hello for k in keywords):
                log.info("friend request %s left pending (no keyword in a %d-char greeting)", fid, len(hello))
                return
            await friendship.accept()
            contact_id = friendship.contact().contact_id
            log.info("friend request %s accepted", fid)
            greeting = self.engine.greeting()
            if greeting:
                self.outbox.put(Outgoing(chat=contact_id, to=contact_id, text=greeting))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001
            log.warning("friend request %s failed: %s", fid, type(exc).__name__)

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

    # -- attachments ------------------------------------------------------------------------
    async def _download(self, client, msg, kind: str) -> Path:
        cap = int(self.settings.max_attachment_mb * 1024 * 1024)
        self.inbox.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.inbox, 0o700)
        tmp = self.inbox / f".{secrets.token_hex(16)}.part"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            size = 0
            with os.fdopen(fd, "wb") as fh:
                async for chunk in self._file_chunks(client, msg, kind, cap):
                    size += len(chunk)
                    if size > cap:
                        raise AttachmentTooLarge(f"more than {size} bytes")
                    fh.write(chunk)
            if size == 0:
                raise EOFError("empty file")
            final = tmp.with_name(secrets.token_hex(16) + _sniff_extension(tmp, kind))
            os.replace(tmp, final)
            return final
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise

    async def _file_chunks(self, client, msg, kind: str, cap: int) -> AsyncIterator[bytes]:
        """The file's bytes: inline base64 from the unary RPC, else the streaming RPC."""
        wx = self._wx
        stub = client.puppet.puppet_stub
        mid = msg.message_id
        if kind == "image":
            resp = await asyncio.wait_for(stub.message_image(id=mid, type=wx.ImageType.IMAGE_TYPE_HD), 60)
        else:
            resp = await asyncio.wait_for(stub.message_file(id=mid), 60)
        try:
            box = json.loads(resp.filebox or "{}")
        except ValueError:
            box = {}
        size = box.get("size")
        if isinstance(size, int) and size > cap:
            raise AttachmentTooLarge(f"{size} bytes announced")
        if box.get("boxType", box.get("type")) == 1 and box.get("base64"):  # Base64 FileBox
            yield base64.b64decode(box["base64"])
            return
        # Node gateways inline only FileBoxes up to ~20 KB; larger ones are UUID boxes.
        if kind == "image":
            stream = stub.message_image_stream(id=mid, type=wx.ImageType.IMAGE_TYPE_HD)
        else:
            stream = stub.message_file_stream(id=mid)
        async with contextlib.aclosing(stream):
            async for resp in stream:
                field, value = wx.betterproto.which_one_of(resp.file_box_chunk, "payload")
                if field == "data" and value:
                    yield value

    # -- sending ----------------------------------------------------------------------------
    def _put(self, reply: Outgoing) -> None:
        if reply.outbox_id is not None:
            if reply.outbox_id in self._queued:
                return
            self._queued.add(reply.outbox_id)
        self.outbox.put(reply)

    def _requeue_unsent(self) -> None:
        unsent = getattr(self.engine, "unsent", None)
        if unsent is None:
            return
        replies = unsent()
        if replies:
            log.info("re-queueing %d replies committed but not sent", len(replies))
        for reply in replies:
            self._put(reply)

    def _sent(self, out: Outgoing) -> None:
        """Mark the durable row sent, right after the gateway took it (at-least-once point)."""
        if out.outbox_id is not None and hasattr(self.engine, "mark_sent"):
            self.engine.mark_sent([out])
            self._queued.discard(out.outbox_id)

    def _is_room(self, chat: str) -> bool:
        return chat in self._rooms or chat.endswith("@chatroom")

    async def _send(self, out: Outgoing) -> None:
        await asyncio.wait_for(self._online.wait(), self.opts.send_wait)
        session = self._session
        if session is None or session.client is None:
            raise ConnectionError("not connected")
        client = session.client
        puppet = client.puppet
        wx = self._wx
        # Puppet calls rather than Room.say()/Contact.say(): those reload the sent message
        # afterwards and raise when that fails, which would make the outbox resend it.
        if out.file is not None:
            data = Path(out.file).read_bytes()
            box = wx.FileBox.from_base64(base64.b64encode(data), name=Path(out.file).name)
            await asyncio.wait_for(puppet.message_send_file(conversation_id=out.chat, file=box), 120)
            log.info("sent file to %s (%d bytes)", "room" if self._is_room(out.chat) else "dm", len(data))
            self._sent(out)
            return
        text, mention_ids = out.text, None
        if out.mention and out.to and self._is_room(out.chat):
            name = await self._member_name(client, out.chat, out.to)
            text = f"@{name}{AT_SEPARATOR}{text}"
            mention_ids = [out.to]
        await asyncio.wait_for(puppet.message_send_text(conversation_id=out.chat, message=text,
                                                        mention_ids=mention_ids), 30)
        log.info("sent text to %s (len=%d mention=%s)", "room" if self._is_room(out.chat) else "dm",
                 len(text), bool(mention_ids))
        self._sent(out)

    async def _member_name(self, client, room_id: str, contact_id: str) -> str:
        contact = client.Contact.load(contact_id)
        with contextlib.suppress(Exception):
            alias = await client.Room.load(room_id).alias(contact)
            if alias:
                return alias
        with contextlib.suppress(Exception):
            await contact.ready()
            return contact.name or contact_id
        return contact_id


def _describe(err: BaseException | None) -> str:
    if err is None:
        return "no error"
    wx = _WX
    if wx is not None and isinstance(err, wx.GRPCError):
        return f"gRPC {err.status.name}"
    text = str(err).strip().splitlines()[0][:120] if str(err).strip() else ""
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def _fmt_mb(mb: float) -> str:
    return f"{mb:g}"


# -- entry point ------------------------------------------------------------------------------
EngineFactory = Callable[[Settings], Awaitable[Any]]


async def _default_engine(settings: Settings):
    from bot.engine import Engine
    return await Engine.open(settings)


async def serve(settings: Settings, *, engine_factory: EngineFactory | None = None,
                options: WechatOptions | None = None, web: bool = False) -> int:
    """Open the engine, run the transport until SIGINT/SIGTERM or a fatal error, close the engine."""
    checked = check_settings(settings)
    if isinstance(checked, str):
        print(checked, file=sys.stderr, flush=True)
        return EXIT_CONFIG
    host, port = checked
    options = options or WechatOptions()
    engine = await (engine_factory or _default_engine)(settings)
    if hasattr(engine, "reload_on_sighup"):  # test engines may not have one
        engine.reload_on_sighup()
    try:
        transport = WechatTransport(settings, engine, host, port, options)
        loop = asyncio.get_running_loop()
        installed = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, transport.request_stop)
                installed.append(sig)
        console = None
        if web:  # the operators' console in this process, on its own store connection
            from bot.web.serve import make_server

            server = make_server(settings, settings.web_host, settings.web_port)
            server.install_signal_handlers = lambda: None  # the transport owns SIGINT/SIGTERM
            console = asyncio.create_task(server.serve(), name="web-console")
            log.info("web console on %s:%d", settings.web_host, settings.web_port)
        try:
            return await transport.run()
        finally:
            if console is not None:
                server.should_exit = True
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(console, 10)
            for sig in installed:
                loop.remove_signal_handler(sig)
    finally:
        await engine.close()


async def run_wechat(settings: Settings, *, engine_factory: EngineFactory | None = None,
                     options: WechatOptions | None = None, web: bool = False) -> int:
    """`python -m bot run` (as `asyncio.run(run_wechat(settings))`): serve WeChat through a
    puppet-service gateway until SIGINT/SIGTERM; returns the exit code.

    0 after SIGINT/SIGTERM, 2 when the token or endpoint is missing, 3 when no gateway answered
    within the start-up timeout, 4 when the gateway refused the token.
    """
    if not logging.getLogger().handlers:  # the CLI normally set up (redacting) logging already
        logging.basicConfig(level=getattr(logging, str(settings.log_level).upper(), logging.INFO),
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    return await serve(settings, engine_factory=engine_factory, options=options, web=web)
