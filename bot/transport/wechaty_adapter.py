"""WeChat transport: a python-wechaty client of a Wechaty puppet-service gateway; the entry point
(`run_wechat`, `serve`). The transport itself is the package `bot.transport.wechat`:

    client.py      the gateway client: settings check, python-wechaty loaded lazily with its quirks
                   worked around (the only module of the bot that imports wechaty), exit codes
    supervisor.py  `WechatTransport`: connect, Stop/Start, the event stream, health, reconnects,
                   login/logout/scan, the engine's ticks and the outbox poll
    inbound.py     messages and files to the engine (`Incoming`), friend requests
    outbound.py    replies from the outbox to WeChat, marked sent once the gateway took them
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from typing import Any, Awaitable, Callable

from bot.settings import Settings
from bot.transport.wechat.client import (
    EXIT_CONFIG, EXIT_NO_GATEWAY, EXIT_OK, EXIT_TOKEN_REFUSED, README_SECTION, check_settings,
)
from bot.transport.wechat.supervisor import WechatOptions, WechatTransport

__all__ = ["EXIT_CONFIG", "EXIT_NO_GATEWAY", "EXIT_OK", "EXIT_TOKEN_REFUSED", "README_SECTION", "WechatOptions",
           "WechatTransport", "check_settings", "run_wechat", "serve"]

log = logging.getLogger(__name__)

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
    from bot.monitoring import Health, MetricsPortError, open_metrics_server

    try:  # bound before the engine opens: a taken port stops the bot at once, with one line
        monitor = open_metrics_server(settings, required=True)
    except MetricsPortError as exc:
        print(f"not starting: {exc}", file=sys.stderr, flush=True)
        return EXIT_CONFIG
    try:
        engine = await (engine_factory or _default_engine)(settings)
    except BaseException:
        if monitor is not None:
            await monitor.stop()
        raise
    if hasattr(engine, "reload_on_sighup"):  # test engines may not have one
        engine.reload_on_sighup()
    try:
        transport = WechatTransport(settings, engine, host, port, options)
        if monitor is not None:
            await monitor.start(Health(engine.store, lambda: engine.snapshot is not None, transport.logged_in,
                                       accounts=[settings.account]))
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
        if monitor is not None:
            await monitor.stop()
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
