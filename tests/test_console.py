"""The console chat behaves like the running bot: it ticks while it waits for input (the email
queue, an operator's status note from another process), prints what arrives as it arrives, labels
or hides replies for someone else, and keeps log lines out of the chat."""
import os
import re
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from console_pty import ConsolePty
from driver import Driver, email_answers, make_settings, run_appeal
from test_appeal_delivery import MAILBOX, smtp, smtp_env  # noqa: F401 - smtp is a fixture

ROOT = Path(__file__).resolve().parent.parent


def console_env(tmp_path, **extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOT_")}
    env.update({"BOT_KEY_FILE": str(tmp_path / "keys" / "appeal.key"), "BOT_APPEAL_EMAIL": MAILBOX,
                "BOT_DATA_DIR": str(tmp_path / "data"), "PYTHONUNBUFFERED": "1", **extra})
    return env


def wait(predicate, timeout=30.0):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


async def test_console_delivers_queued_email_and_status_note_without_input(tmp_path, media, smtp):  # noqa: F811
    env = console_env(tmp_path, **smtp_env(smtp, BOT_ADMINS="boss"))
    console = ConsolePty(["--user", "u1", "--tick-seconds", "0.3"], env, tmp_path / "stderr.txt")
    try:
        console.wait_for("你> ")
        # Another process (here: this test's engine, on the same data dir) takes u1's appeal to
        # 确认: the email is queued. Nothing is typed into the console from here on.
        d = await Driver.open(tmp_path, **smtp_env(smtp, BOT_ADMINS="boss"))
        d.clock = datetime.now(timezone.utc)  # the console's clock: no reminder fires meanwhile
        try:
            final, _ = await run_appeal(d, email_answers(media), "没有")
        finally:
            await d.close()
        appeal_id = final["appeal_id"]
        assert wait(lambda: smtp.box.received), "the console's tick did not send the queued email"
        assert len(smtp.box.received) == 1 and smtp.box.received[0][0] == [MAILBOX]
        end = console.wait_for(f"bot> 你的申诉材料(编号 {appeal_id})已发送到大鱼号邮箱")
        # an operator sets a status from the command line; the running console tells the creator
        out = subprocess.run([sys.executable, "-m", "bot", "appeals", "status", appeal_id, "need_more",
                              "--note", "手持照片不清晰。"], cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=60)
        assert out.returncode == 0, out.stderr
        end = console.wait_for(f"bot> 你的申诉(编号 {appeal_id})需要补充材料。说明:手持照片不清晰。准备好", start=end)
        assert "。。" not in console.screen
        # the prompt is drawn again under what arrived, and the chat goes on
        console.wait_for("你> ", start=end)
        console.type("进度")
        end = console.wait_for(f"bot> 你最近的申诉:编号 {appeal_id},状态:需要补充材料", start=end)
        console.wait_for("\n     · ", start=end)  # the thread, one line each
    finally:
        code = console.close()
    assert code == 0
    err = (tmp_path / "stderr.txt").read_text("utf-8")
    assert "INFO" not in err and "INFO" not in console.screen  # warnings only, unless --verbose


async def test_console_verbose_logs_go_to_stderr(tmp_path):
    console = ConsolePty(["--verbose"], console_env(tmp_path, BOT_LOG_LEVEL="INFO"), tmp_path / "stderr.txt")
    try:
        console.wait_for("你> ")
        console.type("#reload")  # a non-admin: refused, and the attempt logged (a warning)
        console.wait_for("只有管理员可以使用")
    finally:
        assert console.close() == 0
    err = (tmp_path / "stderr.txt").read_text("utf-8")
    assert "WARNING bot.admin.commands: refused admin command" in err and "INFO" in err
    # stamped like every time the console shows: the timezone's minute
    assert re.match(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2} (INFO|WARNING) ", err), err
    assert "refused admin command" not in console.screen


def test_ctrl_c_leaves_at_once_and_gives_the_terminal_back(tmp_path):
    import termios

    console = ConsolePty([], console_env(tmp_path), tmp_path / "stderr.txt")
    try:
        console.wait_for("你> ")
        os.write(console.master, "半句话".encode())  # a line half typed: the line editor holds the terminal
        console.wait_for("半句话")
        os.write(console.master, b"\x03")  # Ctrl-C
        console.proc.wait(timeout=10)  # without anyone pressing Enter
        assert console.proc.returncode == 130
        modes = termios.tcgetattr(console.master)
        assert modes[3] & (termios.ECHO | termios.ICANON) == termios.ECHO | termios.ICANON  # echo, line mode
        assert modes[3] == console.initial_modes[3]  # local modes as they were before the console
    finally:
        console.close()
    assert "Traceback" not in (tmp_path / "stderr.txt").read_text("utf-8")


class Captured:
    """A Screen stand-in: what the console printed."""

    def __init__(self):
        self.lines: list[str] = []

    def say(self, text: str) -> None:
        self.lines.append(text)

    note = say


@pytest.mark.parametrize("others", ["show", "hide"])
async def test_replies_for_someone_else_are_labelled_or_hidden(tmp_path, others):
    from bot.engine import Engine
    from bot.transport.console import Console

    engine = await Engine.open(make_settings(tmp_path, BOT_HANDOFF_TO="admin-1"))
    try:
        screen = Captured()
        console = Console(engine, "u1", screen, others=others)
        await console.send("转人工")
        mine = [x for x in screen.lines if x.startswith("bot> ")]
        theirs = [x for x in screen.lines if x.startswith("[to admin-1] ")]
        assert mine and "通知了社群管理员" in mine[-1]
        if others == "show":
            assert len(theirs) == 1 and "创作者 u1 请求人工帮助" in theirs[0]
        else:
            assert theirs == []
        assert len(screen.lines) == len(mine) + len(theirs)
        assert engine.store.unsent() == []  # hidden ones are done with too, not printed again
    finally:
        await engine.close()


async def test_a_failing_tick_is_logged_and_what_is_due_still_shown(tmp_path, caplog):
    from bot.engine import Engine
    from bot.messages import Outgoing
    from bot.store import Writes
    from bot.transport.console import Console

    engine = await Engine.open(make_settings(tmp_path))
    try:
        screen = Captured()
        console = Console(engine, "u1", screen)
        # a notification committed by another process, and then the tick breaks
        engine.store.commit_turn(None, None, datetime.now(timezone.utc), Writes(),
                                 [Outgoing(chat="u1", to="u1", text="迟到的通知")])

        async def broken_tick(now=None):
            raise OSError("disk gone")

        engine.tick = broken_tick
        await console.step()
        assert screen.lines == ["bot> 迟到的通知\n"]
        assert "console tick failed: OSError" in caplog.text
    finally:
        await engine.close()
