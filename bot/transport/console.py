"""Console chat: one user talking to the bot in a terminal, with DM semantics.

Type a creator's message and read the reply. `/image PATH` and `/video PATH` send a file,
`/quit` (or Ctrl-D) leaves. State lives in the data dir, so a restart continues the chat.

Like `run`, the console ticks in the background while it waits for input (reminders, expiries,
the email queue, the IMAP poll, an operator's status note from another process) and prints what
arrives for the user as it arrives. Replies for someone else (an admin's handoff note, another
creator's notification) are shown labelled `[to ID]`, or, with `others="hide"`, not at all.
"""
from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import datetime, timezone
from pathlib import Path

from bot.engine import Engine
from bot.messages import Attachment, Incoming, Outgoing
from bot.monitoring import start_monitoring, stop_monitoring
from bot.settings import Settings
from bot.transport.screen import Screen

log = logging.getLogger(__name__)

BANNER = """大鱼号实名认证小助手(控制台)。数据目录:{data_dir}
把认证失败的提示语发给我;/image 路径 或 /video 路径 发送文件;/quit 退出。"""
TICK_SECONDS = 2.0  # how often the console ticks and looks at the outbox while it waits


def format_reply(r: Outgoing, user: str) -> str:
    """`bot> text` (continuation lines indented) for the user; `[to ID] text` for anyone else."""
    head = "bot> " if r.chat == user else f"[to {r.chat}] "
    text = r.text if r.file is None else (r.text + "\n" if r.text else "") + f"(文件:{Path(r.file).name})"
    return head + text.replace("\n", "\n" + " " * 5) + "\n"


class Console:
    def __init__(self, engine: Engine, user: str, screen: Screen, others: str = "show",
                 tick_seconds: float = TICK_SECONDS):
        self.engine, self.user, self.screen = engine, user, screen
        self.others = others  # show | hide
        self.tick_seconds = tick_seconds
        # One turn at a time: a tick and a typed message never deliver (or tick) concurrently.
        self._busy = asyncio.Lock()

    async def show(self, r: Outgoing) -> None:
        if r.chat != self.user and self.others == "hide":
            return  # marked sent all the same: the console is this account's only transport
        self.screen.say(format_reply(r, self.user))

    async def background(self) -> None:
        """The tick of `run`, while the person reads or types."""
        while True:
            await self.step()
            await asyncio.sleep(self.tick_seconds)

    async def step(self) -> None:
        async with self._busy:
            try:
                await self.engine.tick()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - one bad tick must not end the chat
                log.warning("console tick failed: %s", type(exc).__name__,
                            exc_info=log.isEnabledFor(logging.DEBUG))
            try:  # what is due is shown even when the tick failed half-way
                await self.engine.deliver(self.show)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the store is back on a later tick
                log.warning("console delivery failed: %s", type(exc).__name__,
                            exc_info=log.isEnabledFor(logging.DEBUG))

    async def send(self, text: str = "", attachment: Attachment | None = None) -> None:
        msg = Incoming(message_id=uuid.uuid4().hex, chat=self.user, sender=self.user, text=text,
                       at=datetime.now(timezone.utc), attachment=attachment)
        async with self._busy:
            await self.engine.handle(msg)
            await self.engine.deliver(self.show)

    async def chat(self) -> None:
        while True:
            try:
                line = await self.screen.read()
            except EOFError:
                self.screen.say("")
                return
            line = line.strip()
            if line in ("/quit", "/exit"):
                return
            if not line:
                continue
            command, _, arg = line.partition(" ")
            if command in ("/image", "/video", "/file"):
                path = Path(arg.strip()).expanduser()
                if not path.is_file():
                    self.screen.say(f"找不到文件:{path}")
                    continue
                await self.send(attachment=Attachment(path, command[1:]))
            elif command.startswith("/") and command != "/reload":  # /reload is an admin command
                self.screen.say("可用:/image 路径、/video 路径、/quit")
            else:
                await self.send(line)


async def run_console(settings: Settings, user: str = "console-user", *, others: str = "show",
                      tick_seconds: float = TICK_SECONDS, screen: Screen | None = None) -> int:
    screen = screen or Screen()
    engine = await Engine.open(settings)
    engine.reload_on_sighup()
    monitor = await start_monitoring(settings, engine)
    screen.say(BANNER.format(data_dir=settings.data_dir))
    console = Console(engine, user, screen, others, tick_seconds)
    ticker = None
    try:
        with screen.terminal_kept():
            await console.step()  # replies committed before a crash or quit, then what is due
            ticker = asyncio.create_task(console.background(), name="console-tick")
            await console.chat()
    finally:
        if ticker is not None:
            async with console._busy:  # not in the middle of a send: between two ticks
                ticker.cancel()
            await asyncio.gather(ticker, return_exceptions=True)
        await stop_monitoring(monitor)
        await engine.close()
    return 0
