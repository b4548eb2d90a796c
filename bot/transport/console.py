"""Console chat: one user talking to the bot in a terminal, with DM semantics.

Type a creator's message and read the reply. `/image PATH` and `/video PATH` send a file,
`/quit` (or Ctrl-D) leaves. State lives in the data dir, so a restart continues the chat.
"""
from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timezone
from pathlib import Path

from bot.engine import Engine
from bot.monitoring import start_monitoring, stop_monitoring
from bot.messages import Attachment, Incoming
from bot.settings import Settings

BANNER = """大鱼号实名认证小助手(控制台)。数据目录:{data_dir}
把认证失败的提示语发给我;/image 路径 或 /video 路径 发送文件;/quit 退出。"""


async def run_console(settings: Settings, user: str = "console-user") -> int:
    engine = await Engine.open(settings)
    engine.reload_on_sighup()
    monitor = await start_monitoring(settings, engine)
    print(BANNER.format(data_dir=settings.data_dir), flush=True)
    async def show(r) -> None:
        print(f"bot> {r.text}\n", flush=True)

    try:
        await engine.tick()
        await engine.deliver(show)  # replies committed before a crash or quit, then due reminders
        while True:
            try:
                line = await asyncio.to_thread(input, "你> ")
            except EOFError:
                print()
                break
            line = line.strip()
            if line in ("/quit", "/exit"):
                break
            attachment = None
            command, _, arg = line.partition(" ")
            if command in ("/image", "/video", "/file"):
                path = Path(arg.strip()).expanduser()
                if not path.is_file():
                    print(f"找不到文件:{path}", flush=True)
                    continue
                attachment = Attachment(path, command[1:])
            elif command.startswith("/") and command != "/reload":  # /reload is an admin command
                print("可用:/image 路径、/video 路径、/quit", flush=True)
                continue
            msg = Incoming(message_id=uuid.uuid4().hex, chat=user, sender=user,
                           text="" if attachment else line, at=datetime.now(timezone.utc), attachment=attachment)
            await engine.tick()
            await engine.handle(msg)
            await engine.deliver(show)
    finally:
        await stop_monitoring(monitor)
        await engine.close()
    return 0
