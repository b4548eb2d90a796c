"""The appeal's whole loop through a live `python -m bot replay -` process, with real servers:
email route -> 确认 -> the SMTP server (aiosmtpd) receives it -> the platform replies by IMAP (Dovecot,
APPEND) -> the creator's DM has the reply -> the operator sets need_more for the hand-held photo with
the CLI (another process) -> the creator sends a new photo and 确认 -> the SMTP server receives a
second email in the same thread with exactly that photo -> status sent."""
import hashlib
import json
import os
import queue
import subprocess
import sys
import threading
import time
from email.message import EmailMessage
from email.utils import make_msgid

import pytest

from driver import email_answers
from imap_support import IMAP_MISSING_REASON, imap_server  # noqa: F401 (fixture)
from test_appeal_delivery import KEY, MAILBOX, ROOT, smtp  # noqa: F401 (fixture)

pytestmark = pytest.mark.skipif(IMAP_MISSING_REASON is not None, reason=IMAP_MISSING_REASON or "")
P2 = "人脸与公安网照片不一致,请确保是账户本人操作"


class Live:
    def __init__(self, env: dict, data):
        self.p = subprocess.Popen([sys.executable, "-m", "bot", "replay", "-", "--data-dir", str(data)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, env={**os.environ, **env}, cwd=ROOT)
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.n = 0

    def _read(self):
        for line in self.p.stdout:
            if line.startswith("{"):
                self.lines.put(json.loads(line))

    def send(self, event: dict) -> None:
        self.p.stdin.write(json.dumps(event, ensure_ascii=False) + "\n")
        self.p.stdin.flush()

    def until(self, pred, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            try:
                r = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError("the expected reply did not come") from None
            if pred(r):
                return r

    def say(self, **event) -> dict:
        self.n += 1
        mid = f"m{self.n}"
        self.send({"id": mid, "from": "u1", **event})
        r = self.until(lambda x: x.get("reply_to") == mid)
        time.sleep(0.3)  # a turn's replies are printed together: take the last of them
        while not self.lines.empty():
            more = self.lines.get()
            if more.get("reply_to") == mid:
                r = more
        return r


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def wait_for(cond, timeout=30):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_reply_by_imap_then_supplement_in_the_same_thread(tmp_path, smtp, imap_server, media):
    box = imap_server.new_mailbox()
    env = {"BOT_APPEAL_KEY": KEY, "BOT_LOG_LEVEL": "WARNING", "BOT_OCR_ENABLED": "false", "PYTHONPATH": str(ROOT),
           "BOT_SMTP_HOST": "127.0.0.1", "BOT_SMTP_PORT": str(smtp.port), "BOT_SMTP_SECURITY": "none",
           "BOT_SMTP_FROM": "bot@example.invalid", "BOT_APPEAL_EMAIL": MAILBOX, **imap_server.env(box)}
    data = tmp_path / "data"
    bot = Live(env, data)
    try:
        answers = email_answers(media)
        bot.say(text=P2)
        bot.say(text="需要")
        r = bot.say(text="没有")
        while r["awaiting"] != "confirm":
            r = bot.say(**answers[r["awaiting"]])
        r = bot.say(text="确认")
        appeal_id = r["appeal_id"]
        bot.send({"tick": "2030-01-01T00:00:00+00:00"})  # the send queue (and an IMAP poll)
        sent = bot.until(lambda x: "已发送" in x["text"] and x.get("appeal_id") in (None, appeal_id))
        assert appeal_id in sent["text"]
        wait_for(lambda: len(smtp.box.received) == 1)
        first = smtp.box.received[0][1]

        reply = EmailMessage()  # the platform answers in the thread
        reply["From"] = MAILBOX
        reply["To"] = "bot@example.invalid"
        reply["Subject"] = "回复:" + str(first["Subject"])
        reply["Message-ID"] = reply_id = make_msgid(domain="platform.example")
        reply["In-Reply-To"] = first["Message-ID"]
        reply["References"] = first["Message-ID"]
        reply.set_content("您好,请补充清晰的手持身份证照片。\n\n大鱼号团队\n", charset="utf-8")
        imap_server.append(box, bytes(reply))
        bot.send({"tick": "2030-01-01T00:01:00+00:00"})
        told = bot.until(lambda x: "平台回复了你的申诉" in x["text"])
        assert "请补充清晰的手持身份证照片" in told["text"] and appeal_id in told["text"]

        cli = subprocess.run([sys.executable, "-m", "bot", "appeals", "status", appeal_id, "need_more",
                              "--items", "id_handheld_photo", "--note", "手持照片不清晰", "--data-dir", str(data)],
                             env={**os.environ, **env}, cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert cli.returncode == 0, cli.stderr
        asked = bot.until(lambda x: "需要补充" in x["text"])  # the live poll delivers the operator's status
        assert "手持身份证正面照片" in asked["text"] and "补充" in asked["text"]

        r = bot.say(text="补充")
        assert r["awaiting"] == "id_handheld_photo"
        r = bot.say(image=str(media["back"]))  # the new photo
        assert r["awaiting"] == "confirm"
        r = bot.say(text="确认")
        bot.send({"tick": "2030-01-01T00:10:00+00:00"})
        bot.until(lambda x: "补充材料" in x["text"] and "已发送" in x["text"])
        wait_for(lambda: len(smtp.box.received) == 2)
        second = smtp.box.received[1][1]
        assert second["In-Reply-To"] == reply_id
        assert str(second["Subject"]) == "Re: " + str(first["Subject"])
        atts = list(second.iter_attachments())
        assert len(atts) == 1 and sha(atts[0].get_payload(decode=True)) == sha(media["back"].read_bytes())
    finally:
        bot.p.stdin.close()
        assert bot.p.wait(timeout=60) == 0, bot.p.stderr.read()[-2000:]
    show = subprocess.run([sys.executable, "-m", "bot", "appeals", "show", appeal_id, "--data-dir", str(data)],
                          env={**os.environ, **env}, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert show.returncode == 0, show.stderr
    lines = show.stdout
    assert "status sent" in lines.splitlines()[0]
    assert lines.index("our email") < lines.index("platform reply") < lines.index("our follow-up")
    assert "请补充清晰的手持身份证照片" in lines and "[suggests need_more]" in lines
