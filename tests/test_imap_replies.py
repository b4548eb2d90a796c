"""The platform's replies by IMAP: a real Dovecot (tests/imap_support.py) the "platform" APPENDs
to, a real SMTP server (aiosmtpd) the appeal goes out through, the engine driven by its tick; the
creator's notification is read from what the tick committed to the outbox."""
import asyncio
import base64
import json
import logging
import os
import quopri
import subprocess
import sys
import time
from email.utils import make_msgid

import pytest

from driver import Driver, email_answers, run_appeal
from imap_support import IMAP_MISSING_REASON, imap_server  # noqa: F401 (fixture)
from pg_support import PG_MISSING_REASON, postgres_server  # noqa: F401 (fixture, by getfixturevalue)
from test_appeal_delivery import KEY, ROOT, SmtpServer, at, smtp_env

pytestmark = pytest.mark.skipif(IMAP_MISSING_REASON is not None, reason=IMAP_MISSING_REASON or "")

SUBJECT = "个人实名认证失败材料-小鱼的美食日记"
PLATFORM = "support@platform.invalid"


def reply(subject, body: bytes = b"", headers: str = "Content-Type: text/plain; charset=utf-8\r\n",
          in_reply_to=None, references=None, message_id="auto") -> bytes:
    """A reply as the platform's mail client would write it (raw: charsets and encodings as given)."""
    from email.header import Header

    lines = [f"From: {PLATFORM}", "To: bot@example.invalid", "Date: Tue, 24 Nov 2026 12:00:00 +0800",
             f"Subject: {Header(subject, 'utf-8').encode()}", "MIME-Version: 1.0"]
    if message_id:
        lines.append(f"Message-ID: {make_msgid(domain='platform.invalid') if message_id == 'auto' else message_id}")
    if in_reply_to:
        lines.append(f"In-Reply-To: {in_reply_to}")
    if references:
        lines.append(f"References: {references}")
    return ("\r\n".join(lines) + "\r\n").encode() + headers.encode() + b"\r\n" + body


def plain(text: str, **kw) -> bytes:
    return reply(kw.pop("subject", "回复:" + SUBJECT), text.replace("\n", "\r\n").encode(), **kw)


async def sent_appeal(d: Driver, mail, user="u1", account_name=None) -> tuple[str, str]:
    """An email-route appeal through the dialog, sent by SMTP: (appeal id, its Message-ID)."""
    answers = email_answers(MEDIA)
    if account_name:
        answers = {**answers, "account_name": {"text": account_name}}
    final, _ = await run_appeal(d, answers, "没有", user=user)
    appeal_id = final["appeal_id"]
    before = len(mail.box.received)
    await d.send(tick=at(31))
    assert len(mail.box.received) == before + 1
    msg = mail.box.received[-1][1]
    assert d.engine.store.appeal(appeal_id)["status"] == "sent"
    return appeal_id, msg["Message-ID"]


MEDIA = {}


@pytest.fixture
def imap(imap_server):
    """The session's Dovecot (tests/imap_support.py), up (a test may have left it stopped)."""
    imap_server.start()
    return imap_server


@pytest.fixture
def mail():
    """The platform's SMTP server (aiosmtpd), as in tests/test_appeal_delivery.py."""
    server = SmtpServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _media(media):
    MEDIA.update(media)


@pytest.fixture
async def bot(tmp_path, mail, imap):
    """An engine with SMTP and IMAP configured (its own fresh mailbox); `bot.box` is the mailbox."""
    opened = []

    async def open_bot(box=None, **env):
        box = box or imap.new_mailbox()
        d = await Driver.open(tmp_path / f"b{len(opened)}", **{**smtp_env(mail), **imap.env(box), **env})
        d.box = box
        opened.append(d)
        return d

    yield open_bot
    for d in opened:
        await d.close()


def told(replies, user="u1"):
    return [r["text"] for r in replies if r["chat"] == user]


async def test_a_reply_threaded_by_in_reply_to_is_stored_and_the_creator_told(bot, mail, imap):
    d = await bot()
    appeal_id, mid = await sent_appeal(d, mail)
    store = d.engine.store
    assert store.thread(appeal_id)[0]["subject"] == SUBJECT and store.thread(appeal_id)[0]["message_id"] == mid
    assert told(await d.send(tick=at(32))) == []  # nothing in the mailbox yet
    text = ("您好，\n\n您提交的手持身份证照片不清晰，请补充清晰的手持身份证照片。\n\n大鱼号客服\n-- \n"
            "阿里巴巴文化娱乐集团\n")
    raw = plain(text + "\n在 2026年11月24日 10:31，bot@example.invalid 写道：\n> 个人实名认证失败材料\n",
                subject="回复：" + SUBJECT, in_reply_to=mid, references=mid)
    imap.append(d.box, raw)
    out = await d.send(tick=at(33))
    want = "您好，\n\n您提交的手持身份证照片不清晰，请补充清晰的手持身份证照片。\n\n大鱼号客服"
    assert told(out) == [f"平台回复了你的申诉 {appeal_id}:\n{want}"]
    a = store.appeal(appeal_id)
    assert a["status"] == "replied"
    assert [(h["status"], h["by"]) for h in store.appeal_history(appeal_id)][-2:] == [("sent", "bot"), ("replied", "imap")]
    thread = store.thread(appeal_id)
    assert [t["kind"] for t in thread] == ["sent", "reply"]
    assert thread[1]["in_reply_to"] == mid and thread[1]["suggested"] == "need_more"
    assert "写道" not in thread[1]["body"] and "阿里巴巴" not in thread[1]["body"] and "大鱼号客服" in thread[1]["body"]
    assert store.suggested_status(appeal_id) == "need_more"
    # never marked, moved or deleted
    msgs = imap.messages(d.box)
    assert len(msgs) == 1 and all(b"\\Seen" not in f and b"\\Deleted" not in f for _, f in msgs)
    assert told(await d.send(tick=at(34))) == []  # read once
    r = await d.say("进度")
    assert appeal_id in r["text"] and "平台已回复" in r["text"]
    assert d.engine.replies.replies_taken == 1 and d.engine.replies.polls_failed == 0


async def test_a_reply_to_the_platforms_earlier_reply_belongs_to_the_appeal(bot, mail, imap):
    d = await bot()
    appeal_id, mid = await sent_appeal(d, mail)
    imap.append(d.box, plain("请补充视频。", in_reply_to=mid, message_id="<first@platform.invalid>"))
    imap.append(d.box, plain("补充说明:视频需露出正脸。", subject="再次提醒", in_reply_to="<first@platform.invalid>",
                             references="<first@platform.invalid>"))
    out = await d.send(tick=at(40))
    assert told(out) == [f"平台回复了你的申诉 {appeal_id}:\n请补充视频。",
                         f"平台回复了你的申诉 {appeal_id}:\n补充说明:视频需露出正脸。"]


async def test_a_reply_threaded_by_subject_only(bot, mail, imap):
    d = await bot()
    appeal_id, _ = await sent_appeal(d, mail)
    imap.append(d.box, plain("您的申诉已通过，感谢您的耐心等待。", subject="Re: RE: " + SUBJECT, message_id="<s1@p>"))
    out = await d.send(tick=at(40))
    assert told(out) == [f"平台回复了你的申诉 {appeal_id}:\n您的申诉已通过，感谢您的耐心等待。"]
    assert d.engine.store.suggested_status(appeal_id) == "resolved"
    assert d.engine.store.appeal(appeal_id)["status"] == "replied"  # suggested, never applied


async def test_mail_that_matches_nothing_is_left_alone(bot, mail, imap):
    d = await bot()
    appeal_id, mid = await sent_appeal(d, mail)
    # a second appeal with the same subject: the subject alone is ambiguous now
    from bot.store import Writes

    w = Writes()
    w.add_thread("AP-OTHER", "sent", d.clock, message_id="<AP-OTHER@dayu-bot.invalid>", subject="个人实名认证失败材料-老王")
    w.add_thread("AP-TWIN", "sent", d.clock, message_id="<AP-TWIN@dayu-bot.invalid>", subject="个人实名认证失败材料-老王")
    d.engine.store.commit_turn(None, None, d.clock, w, [])
    for raw in (plain("周末促销", subject="本周优惠活动"),  # unrelated
                plain("已处理", subject=SUBJECT),  # the subject without a reply prefix (a copy of ours)
                plain("已处理", subject="回复:个人实名认证失败材料-老王"),  # two appeals have that subject
                plain("已处理", subject="回复:无关", in_reply_to="<nobody@x>", references="<nobody2@x>"),
                mail.box.received[-1][1].as_bytes()):  # our own email, in the mailbox too
        imap.append(d.box, raw)
    out = await d.send(tick=at(40))
    assert told(out) == [] and d.engine.store.appeal(appeal_id)["status"] == "sent"
    assert d.engine.replies.left_alone == 5 and d.engine.replies.replies_taken == 0
    msgs = imap.messages(d.box)
    assert len(msgs) == 5 and all(b"\\Seen" not in f and b"\\Deleted" not in f for _, f in msgs)
    assert d.engine.store.imap_position(d.box)[1] == msgs[-1][0]  # looked at once


async def test_encodings_gb18030_base64_quoted_printable_and_html_only(bot, mail, imap):
    d = await bot()
    appeal_id, mid = await sent_appeal(d, mail)
    text = "您好,经核实,您的认证申请无法通过,原因:证件信息与公安网不一致。"
    gb = reply("回复:" + SUBJECT, base64.encodebytes(text.encode("gb18030")),
               "Content-Type: text/plain; charset=GB18030\r\nContent-Transfer-Encoding: base64\r\n", in_reply_to=mid)
    gbk_text = "请重新提交,手持照片中的证件号码需清晰可见(朱镕基体例)。"  # 镕: GBK, not GB2312
    gbk = reply("回复:" + SUBJECT, base64.encodebytes(gbk_text.encode("gbk")),
                'Content-Type: text/plain; charset="gb2312"\r\nContent-Transfer-Encoding: base64\r\n',
                in_reply_to=mid)
    qp_text = "您好:\n您的申诉已处理,请重新登录大鱼号查看认证状态。"
    qp = reply("回复:" + SUBJECT, quopri.encodestring(qp_text.replace("\n", "\r\n").encode()),
               "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n",
               references=f"<older@platform.invalid> {mid}")
    html = ("<html><head><style>p{color:red}</style></head><body><div>您好，</div><p>您的申诉已通过&nbsp;审核，"
            "请重新认证。</p><br><div>大鱼号客服</div><blockquote>个人实名认证失败材料 原文</blockquote></body></html>")
    htm = reply("答复: " + SUBJECT, base64.encodebytes(html.encode("utf-8")),
                "Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n")
    for raw in (gb, gbk, qp, htm):
        imap.append(d.box, raw)
    out = await d.send(tick=at(40))
    head = f"平台回复了你的申诉 {appeal_id}:\n"
    assert told(out) == [head + text, head + gbk_text, head + qp_text, head + "您好，\n您的申诉已通过 审核，请重新认证。\n\n大鱼号客服"]
    suggested = [t["suggested"] for t in d.engine.store.thread(appeal_id) if t["kind"] == "reply"]
    assert suggested == ["rejected", "need_more", "resolved", "resolved"]


async def test_a_reply_seen_twice_is_taken_once(bot, mail, imap):
    d = await bot()
    appeal_id, mid = await sent_appeal(d, mail)
    raw = plain("请补充手机型号截图。", in_reply_to=mid, message_id="<twice@platform.invalid>")
    imap.append(d.box, raw)
    imap.append(d.box, raw)  # delivered twice
    out = await d.send(tick=at(40))
    assert len(told(out)) == 1
    imap.append(d.box, raw)  # and again later
    assert told(await d.send(tick=at(41))) == []
    assert [t["kind"] for t in d.engine.store.thread(appeal_id)] == ["sent", "reply"]
    assert [h["status"] for h in d.engine.store.appeal_history(appeal_id)].count("replied") == 1


async def test_a_new_uidvalidity_reads_the_mailbox_again_without_taking_a_reply_twice(bot, mail, imap):
    d = await bot()
    appeal_id, mid = await sent_appeal(d, mail)
    first = plain("请补充清晰的身份证国徽面照片。", in_reply_to=mid, message_id="<v1@platform.invalid>")
    imap.append(d.box, first)
    assert len(told(await d.send(tick=at(40)))) == 1
    validity = d.engine.store.imap_position(d.box)[0]
    imap.recreate(d.box)  # the server's mailbox was rebuilt: UIDs start again at 1
    imap.append(d.box, first)  # the same reply, with a new UID
    imap.append(d.box, plain("材料已收到,已处理。", in_reply_to=mid, message_id="<v2@platform.invalid>"))
    out = await d.send(tick=at(41))
    assert told(out) == [f"平台回复了你的申诉 {appeal_id}:\n材料已收到,已处理。"]
    new_validity, last = d.engine.store.imap_position(d.box)
    assert new_validity != validity and last == 2
    assert [t["message_id"] for t in d.engine.store.thread(appeal_id)][1:] == ["<v1@platform.invalid>",
                                                                               "<v2@platform.invalid>"]


async def test_the_server_down_then_up_is_logged_retried_and_never_breaks_the_tick(bot, mail, imap, caplog):
    d = await bot()
    appeal_id, mid = await sent_appeal(d, mail)
    imap.stop()
    try:
        with caplog.at_level(logging.WARNING, logger="bot.appeals.imap"):
            out = await d.send(tick=at(40))  # the rest of the tick still runs
            await d.send(tick=at(41))
        assert told(out) == []
        lines = [r.getMessage() for r in caplog.records if r.name == "bot.appeals.imap"]
        assert len(lines) == 2 and all("\n" not in x and "failed" in x and "ConnectionRefused" in x for x in lines)
        assert d.engine.replies.polls_failed == 2 and d.engine.replies.last_error
        r = await d.say("进度")  # the bot answers meanwhile
        assert appeal_id in r["text"]
    finally:
        imap.start()
    imap.append(d.box, plain("请补充视频。", in_reply_to=mid))
    out = await d.send(tick=at(42))
    assert len(told(out)) == 1 and d.engine.replies.polls_ok >= 1 and d.engine.replies.last_error is None


async def test_a_refused_login_is_logged_in_one_line(bot, mail, imap, caplog):
    d = await bot(BOT_IMAP_PASSWORD="wrong")
    with caplog.at_level(logging.WARNING, logger="bot.appeals.imap"):
        await d.send(tick=at(1))
    lines = [r.getMessage() for r in caplog.records if r.name == "bot.appeals.imap"]
    assert len(lines) == 1 and "AUTHENTICATIONFAILED" in lines[0] and "wrong" not in lines[0]


async def test_polls_when_due_and_without_forwarding_the_creator_is_not_told(bot, mail, imap, tmp_path):
    pw = tmp_path / "imap.pw"
    pw.write_text(imap.password + "\nignored\n")
    d = await bot(BOT_REPLY_FORWARD="false", BOT_IMAP_POLL_SECONDS="600", BOT_IMAP_PASSWORD="wrong",
                  BOT_IMAP_PASSWORD_FILE=str(pw))
    appeal_id, mid = await sent_appeal(d, mail)  # its ticks polled (the first at once)
    imap.append(d.box, plain("您的申诉已通过。", in_reply_to=mid))
    assert told(await d.send(tick=at(35))) == [] and d.engine.store.thread(appeal_id)[-1]["kind"] == "sent"  # not due
    out = await d.send(tick=at(31 + 10))
    assert told(out) == [] and d.engine.store.appeal(appeal_id)["status"] == "replied"
    assert d.engine.store.thread(appeal_id)[-1]["body"] == "您的申诉已通过。"


@pytest.mark.parametrize("security", ["ssl", "starttls"])
async def test_tls(bot, mail, imap, security, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", str(imap.cert))  # the test server's self-signed certificate
    d = await bot(**{k: v for k, v in imap.env("x", security).items() if k in ("BOT_IMAP_PORT", "BOT_IMAP_SECURITY")})
    appeal_id, mid = await sent_appeal(d, mail)
    imap.append(d.box, plain("已处理。", in_reply_to=mid))
    assert told(await d.send(tick=at(40))) == [f"平台回复了你的申诉 {appeal_id}:\n已处理。"]
    assert d.engine.replies.polls_failed == 0


async def test_a_long_reply_is_cut_for_the_dm_and_kept_whole(bot, mail, imap):
    d = await bot()
    appeal_id, mid = await sent_appeal(d, mail)
    long = "请补充材料。" + "说明" * 400
    imap.append(d.box, plain(long, in_reply_to=mid))
    (text,) = told(await d.send(tick=at(40)))
    body = text.split("\n", 1)[1]
    assert len(body) == 500 and body.endswith("…") and long.startswith(body[:-1])
    assert d.engine.store.thread(appeal_id)[-1]["body"] == long


async def test_two_processes_on_postgresql_take_a_reply_once(request, tmp_path, mail, imap):
    if PG_MISSING_REASON is not None:
        pytest.skip(PG_MISSING_REASON)
    url = request.getfixturevalue("postgres_server").new_database()
    box = imap.new_mailbox()
    env = {**smtp_env(mail), **imap.env(box), "BOT_DATABASE_URL": url, "BOT_APPEAL_KEY": KEY}
    a = await Driver.open(tmp_path / "a", BOT_ACCOUNT="a", **env)
    b = await Driver.open(tmp_path / "b", BOT_ACCOUNT="b", **env)
    try:
        appeal_id, mid = await sent_appeal(a, mail)
        for i in range(3):
            imap.append(box, plain(f"请补充第 {i} 项。", in_reply_to=mid, message_id=f"<pg{i}@platform.invalid>"))
        imap.append(box, plain("请补充第 0 项。", in_reply_to=mid, message_id="<pg0@platform.invalid>"))
        outs = []
        for minute in (40, 41, 42):  # both poll at the same moments
            ra, rb = await asyncio.gather(a.send(tick=at(minute)), b.send(tick=at(minute)))
            outs += told(ra) + told(rb)
        assert sorted(outs) == sorted(f"平台回复了你的申诉 {appeal_id}:\n请补充第 {i} 项。" for i in range(3))
        rows = a.engine.store._query("SELECT message_id FROM appeal_thread WHERE kind = 'reply' ORDER BY seq")
        assert [r[0] for r in rows] == [f"<pg{i}@platform.invalid>" for i in range(3)]
        assert [h["status"] for h in b.engine.store.appeal_history(appeal_id)].count("replied") == 3
        assert a.engine.store.imap_position(box)[1] == 4
        # the notifications leave through the account the appeal was made with
        accounts = {r[0] for r in a.engine.store._query("SELECT account FROM outbox WHERE chat = 'u1'")}
        assert accounts == {"a"}
    finally:
        await a.close()
        await b.close()


def test_a_live_replay_polls_on_its_tick_events(tmp_path, mail, imap):
    """`replay -` with {"tick": …} events polls: the creator's DM has the reply."""
    box = imap.new_mailbox()
    env = dict(os.environ, BOT_APPEAL_KEY=KEY, BOT_LOG_LEVEL="WARNING", BOT_OCR_ENABLED="false",
               **smtp_env(mail), **imap.env(box))
    live = subprocess.Popen([sys.executable, "-m", "bot", "replay", "-", "--data-dir", str(tmp_path / "data")],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    answers = email_answers(MEDIA)
    steps = [{"text": "人脸与公安网照片不一致,请确保是账户本人操作"}, {"text": "是"}, {"text": "没有"}]
    steps += [answers[k] for k in ("account_name", "real_name", "id_number", "id_handheld_photo", "id_front_photo",
                                   "id_back_photo", "error_prompt", "taobao_screenshot", "phone_model",
                                   "taobao_version", "failure_video", "military", "contact", "confirm")]
    try:
        for i, s in enumerate(steps):
            live.stdin.write(json.dumps({"from": "u1", "at": at(i / 10), **s}, ensure_ascii=False) + "\n")
        live.stdin.write(json.dumps({"tick": at(31)}) + "\n")
        live.stdin.flush()
        lines = []
        while not any("已发送" in x.get("text", "") for x in lines):
            lines.append(json.loads(_readline(live)))
        appeal_id = next(x["appeal_id"] for x in lines if x.get("appeal_id"))
        mid = mail.box.received[-1][1]["Message-ID"]
        imap.append(box, plain("请补充清晰的手持身份证照片。", in_reply_to=mid))
        t0 = time.monotonic()
        live.stdin.write(json.dumps({"tick": at(32)}) + "\n")
        live.stdin.flush()
        r = json.loads(_readline(live))
        assert r["chat"] == "u1" and r["text"] == f"平台回复了你的申诉 {appeal_id}:\n请补充清晰的手持身份证照片。"
        assert time.monotonic() - t0 < 30
    finally:
        live.stdin.close()
        live.wait(timeout=60)


def _readline(proc, timeout: float = 120) -> str:
    """The next line the process prints (a reader thread: buffered lines are not lost to select)."""
    import queue
    import threading

    if not hasattr(proc, "lines"):
        proc.lines = queue.Queue()

        def read():
            for line in proc.stdout:
                proc.lines.put(line)
            proc.lines.put("")

        threading.Thread(target=read, daemon=True).start()
    try:
        line = proc.lines.get(timeout=timeout)
    except queue.Empty:
        raise AssertionError(f"no output from the replay process after {getattr(proc, 'seen', [])[-3:]}") from None
    assert line, "the replay process ended"
    proc.seen = [*getattr(proc, "seen", []), line]
    return line
