"""What a reply says: its text (charsets, encodings, HTML, history and signatures cut), the status
its words suggest, and how its subject and references are read (bot/appeals/imap.py)."""
import pytest
from email import policy
from email.parser import BytesParser

from bot.appeals.imap import (
    _fetched, cut_history, forward_text, has_reply_prefix, html_to_text, message_ids, reply_text, strip_prefixes,
    suggest,
)


@pytest.mark.parametrize("text, want", [
    ("您好,已处理。\n\n在 2026年11月24日 星期二 10:31,bot@x.invalid 写道：\n> 原文", "您好,已处理。"),
    ("已处理。\n在2026-11-24 10:31:05,\"bot\"<bot@x.invalid> 写道:\n原文", "已处理。"),
    ("Done.\n\nOn Tue, Nov 24, 2026 at 10:31 AM bot <bot@x.invalid> wrote:\n> original", "Done."),
    ("Done.\nOn Tue, Nov 24, 2026 at 10:31 AM Some Long Name\n<bot@x.invalid> wrote:\n> original", "Done."),
    ("请补充。\n\n-----原始邮件-----\n发件人: bot\n主题: 个人实名认证失败材料", "请补充。"),
    ("请补充。\n------------------ 原始邮件 ------------------\n发件人: bot", "请补充。"),
    ("Please resend.\n-----Original Message-----\nFrom: bot", "Please resend."),
    ("已通过。\n-- \n大鱼号客服中心\n电话 400", "已通过。"),
    ("已通过。\n--\n客服", "已通过。"),
    ("第一行\n> 引用\n>> 更早\n第二行", "第一行\n第二行"),
    ("\n\n  第一段\n\n\n\n第二段  \n\n", "第一段\n\n第二段"),
    ("价格 -- 不变\n证件--清晰", "价格 -- 不变\n证件--清晰"),  # not a signature line
])
def test_quoted_history_and_signatures_are_cut(text, want):
    assert cut_history(text) == want


@pytest.mark.parametrize("text, want", [
    ("请补充清晰的手持身份证照片", "need_more"),
    ("照片不清晰", "need_more"),
    ("审核不通过,请重新提交材料", "need_more"),
    ("您的申诉已被驳回", "rejected"),
    ("审核不通过", "rejected"),
    ("很抱歉,无法为您处理", "rejected"),
    ("您的申诉已通过", "resolved"),
    ("问题已处理,请重新认证", "resolved"),
    ("已收到您的邮件", None),
])
def test_the_words_suggest_a_status(text, want):
    assert suggest(text) == want


@pytest.mark.parametrize("subject, stripped, prefixed", [
    ("Re: 个人实名认证失败材料-小鱼", "个人实名认证失败材料-小鱼", True),
    ("RE:个人实名认证失败材料-小鱼", "个人实名认证失败材料-小鱼", True),
    ("回复:个人实名认证失败材料-小鱼", "个人实名认证失败材料-小鱼", True),
    ("回复：答复：个人实名认证失败材料-小鱼", "个人实名认证失败材料-小鱼", True),
    ("Fwd: Re: 个人实名认证失败材料-小鱼", "个人实名认证失败材料-小鱼", True),
    ("Re[2]: 个人实名认证失败材料-小鱼 ", "个人实名认证失败材料-小鱼", True),
    ("个人实名认证失败材料-小鱼", "个人实名认证失败材料-小鱼", False),
    ("Reply needed", "Reply needed", False),
])
def test_reply_prefixes(subject, stripped, prefixed):
    assert strip_prefixes(subject) == stripped and has_reply_prefix(subject) == prefixed


def test_message_ids_in_references():
    assert message_ids("<a@x> <b@y>\r\n <c@z>") == ["<a@x>", "<b@y>", "<c@z>"]
    assert message_ids(None) == [] and message_ids("no ids") == []


def test_html_is_reduced_to_text():
    html = ("<html><head><title>t</title><style>.x{}</style><script>var a;</script></head><body>"
            "<div>您好&amp;感谢</div><div><div>嵌套</div></div><p>段落<br>换行</p>"
            "<table><tr><td>a</td><td>b</td></tr></table><blockquote>引用的原文</blockquote></body></html>")
    assert html_to_text(html).strip() == "您好&感谢\n嵌套\n段落\n换行\na b"


def _msg(raw: bytes):
    return BytesParser(policy=policy.default).parsebytes(raw)


def test_the_plain_part_is_preferred_and_attachments_ignored():
    raw = (b'Content-Type: multipart/mixed; boundary="m"\r\n\r\n--m\r\n'
           b'Content-Type: multipart/alternative; boundary="a"\r\n\r\n'
           b"--a\r\nContent-Type: text/plain; charset=gbk\r\nContent-Transfer-Encoding: base64\r\n\r\n"
           + __import__("base64").encodebytes("请补充材料".encode("gbk")) +
           b"--a\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>HTML \xe7\x89\x88</p>\r\n--a--\r\n"
           b"--m\r\nContent-Type: image/jpeg\r\nContent-Disposition: attachment; filename=a.jpg\r\n"
           b"Content-Transfer-Encoding: base64\r\n\r\n/9j/4AAQ\r\n--m--\r\n")
    assert reply_text(_msg(raw)) == "请补充材料"


def test_a_wrong_or_unknown_charset_still_reads():
    utf8_said_gbk = b"Content-Type: text/plain; charset=x-unknown-thing\r\n\r\n" + "已处理".encode()
    assert reply_text(_msg(utf8_said_gbk)) == "已处理"
    gb_undeclared = b"Content-Type: text/plain\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" + "已处理".encode("gb18030")
    assert reply_text(_msg(gb_undeclared)) == "已处理"
    assert reply_text(_msg(b"Content-Type: image/png\r\n\r\nxx")) == ""


def test_forwarded_text_is_at_most_500_characters():
    assert forward_text("短") == "短"
    long = "长" * 600
    assert len(forward_text(long)) == 500 and forward_text(long).endswith("…")


def test_fetch_answers_in_any_item_order():
    data = [(b"1 (UID 7 RFC822.SIZE 30 BODY[HEADER.FIELDS (SUBJECT)] {12}", b"Subject: a\r\n"), b")",
            (b"2 (RFC822.SIZE 31 BODY[HEADER.FIELDS (SUBJECT)] {12}", b"Subject: b\r\n"), b" UID 9)"]
    assert _fetched(data) == [(7, 30, b"Subject: a\r\n"), (9, 31, b"Subject: b\r\n")]
