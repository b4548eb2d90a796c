"""The gateway client: the settings it needs, python-wechaty loaded (lazily: the rest of the bot and
its tests never load it) with its quirks worked around, and the client object whose callbacks go to
the transport. This is the only module of the bot that imports wechaty.

Pins (python-wechaty is unmaintained upstream; last release 0.10.7, 2022-11) - verified together
on Python 3.11 against the Node gateway in deploy/gateway (wechaty-puppet-service 1.19.9):
    wechaty==0.10.7 wechaty-puppet==0.4.23 wechaty-puppet-service==0.8.10 wechaty-grpc==0.20.19
    betterproto==1.2.5 grpclib==0.4.9 pyee>=8.2,<12 urllib3<2

What the library gets wrong, and what the transport does instead (docs/wechat.md has the long form):
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

import contextlib
import logging
import os
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from bot.messages import AttachmentKind
from bot.settings import Settings

README_SECTION = 'the README section "Running a Wechaty puppet-service gateway" (docs/wechat.md)'

EXIT_OK = 0
EXIT_CONFIG = 2  # token or endpoint missing / malformed
EXIT_NO_GATEWAY = 3  # no gateway answered within the start-up timeout
EXIT_TOKEN_REFUSED = 4  # the gateway refused the token


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


def _make_client(wx: SimpleNamespace, transport: Any, token: str, endpoint: str):
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


def _describe(err: BaseException | None) -> str:
    if err is None:
        return "no error"
    wx = _WX
    if wx is not None and isinstance(err, wx.GRPCError):
        return f"gRPC {err.status.name}"
    text = str(err).strip().splitlines()[0][:120] if str(err).strip() else ""
    return f"{type(err).__name__}: {text}" if text else type(err).__name__
