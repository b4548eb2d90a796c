"""What a reply of the platform says: its text (the plain part decoded from any charset, else the
HTML part as text; quoted history and signature cut), the status its words suggest, and the subject
and Message-IDs that tie it to an appeal. Pure functions (`imap.py` reads the mailbox)."""
from __future__ import annotations

import re
from email.message import EmailMessage
from html.parser import HTMLParser

FORWARD_CHARS = 500  # of a reply's text, in the creator's DM

_PREFIX = re.compile(r"^\s*(?:(?:re|fw|fwd|aw|sv|回复|回覆|答复|转发|轉發)\s*(?:\[\d+\]|\(\d+\))?\s*[:：]\s*)+",
                     re.IGNORECASE)
_MSGID = re.compile(r"<[^<>\s]+>")
# where the quoted history starts (the line itself and everything after it goes)
_HISTORY = [
    re.compile(r"^\s*在.{0,200}写道\s*[:：]\s*$"),
    re.compile(r"^\s*on\b.{0,300}\bwrote\s*:\s*$", re.IGNORECASE),
    re.compile(r"^\s*-{2,}\s*原始邮件\s*-{2,}\s*$"),
    re.compile(r"^\s*-{2,}\s*original message\s*-{2,}\s*$", re.IGNORECASE),
    re.compile(r"^\s*-{2,}\s*(?:forwarded message|转发邮件)\s*-{2,}\s*$", re.IGNORECASE),
]
_WROTE_START = re.compile(r"^\s*on\s+\S", re.IGNORECASE)
_WROTE_END = re.compile(r"^.{0,300}\bwrote\s*:\s*$", re.IGNORECASE)
_SIGNATURE = re.compile(r"^--\s?$")  # "-- " (RFC 3676), or "--" where a client trimmed the space

# The statuses a reply's words suggest, first match wins: a request to send more outweighs a
# refusal ("不通过,请重新提交"), a refusal outweighs "通过" ("不通过" contains it).
SUGGESTIONS = (
    ("need_more", ("补充", "重新提交", "不清晰", "重新上传", "重新拍")),
    ("rejected", ("驳回", "不通过", "未通过", "无法")),
    ("resolved", ("通过", "已处理")),
)


def suggest(text: str) -> str | None:
    for status, words in SUGGESTIONS:
        if any(w in text for w in words):
            return status
    return None


def strip_prefixes(subject: str) -> str:
    """The subject without its Re:/回复:/答复:/Fwd: prefixes (repeated ones too), whitespace collapsed."""
    return " ".join(_PREFIX.sub("", subject or "").split())


def has_reply_prefix(subject: str) -> bool:
    return bool(_PREFIX.match(subject or ""))


def message_ids(value: str | None) -> list[str]:
    return _MSGID.findall(str(value or "").replace("\x00", ""))


class _HtmlText(HTMLParser):
    """An HTML part as text: a block element starts a new line (once: nested blocks make no blank
    lines), <br> ends one; script, style and quoted blocks (<blockquote>) go."""

    BLOCK = {"p", "div", "tr", "li", "h1", "h2", "h3", "h4", "h5", "h6", "table", "ul", "ol", "hr",
             "section", "article", "header", "footer", "pre", "body"}
    SKIP = {"script", "style", "head", "title", "blockquote"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.skipping = 0

    def _soft_break(self):
        if self.out and not self.out[-1].endswith("\n"):
            self.out.append("\n")

    def handle_starttag(self, tag, attrs):
        if tag in self.SKIP:
            self.skipping += 1
        elif self.skipping:
            return
        elif tag == "br":
            self.out.append("\n")
        elif tag in self.BLOCK:
            self._soft_break()
        elif tag in ("td", "th"):
            self.out.append(" ")

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag in self.SKIP:
            self.skipping -= 1

    def handle_endtag(self, tag):
        if tag in self.SKIP:
            self.skipping = max(0, self.skipping - 1)
        elif tag in self.BLOCK and not self.skipping:
            self._soft_break()

    def handle_data(self, data):
        if not self.skipping:
            text = re.sub(r"[ \t\r\n\f]+", " ", data)
            if self.out and self.out[-1].endswith("\n"):
                text = text.lstrip()
            if text:
                self.out.append(text)


def html_to_text(html: str) -> str:
    p = _HtmlText()
    p.feed(html)
    p.close()
    return "\n".join(line.strip() for line in "".join(p.out).replace("\xa0", " ").split("\n"))


_CHARSET_ALIASES = {"gb2312": "gb18030", "gbk": "gb18030", "x-gbk": "gb18030", "cp936": "gb18030",
                    "euc-cn": "gb18030", "hz-gb-2312": "hz", "big5": "big5hkscs", "ks_c_5601-1987": "euc-kr",
                    "us-ascii": "utf-8", "ascii": "utf-8", "unknown-8bit": "utf-8", "x-unknown": "utf-8"}


def part_text(part: EmailMessage) -> str:
    """A text part's content, decoded from its transfer encoding and charset (GB2312/GBK as their
    superset GB18030; a wrong or missing charset falls back to UTF-8, then GB18030)."""
    data = part.get_payload(decode=True) or b""
    declared = (part.get_content_charset() or "").strip().lower()
    tries = [_CHARSET_ALIASES.get(declared, declared)] if declared else []
    tries += ["utf-8", "gb18030"]
    for charset in tries:
        try:
            return data.decode(charset)
        except (LookupError, UnicodeDecodeError):
            continue
    return data.decode("utf-8", "replace")


def cut_history(text: str) -> str:
    """The reply's own words: quoted lines ("> …") dropped; from a quote header ("在 … 写道:",
    "On … wrote:", "-----原始邮件-----", "-----Original Message-----") or a signature ("-- ") on,
    everything goes. Blank runs collapsed, ends trimmed."""
    kept: list[str] = []
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    for i, line in enumerate(lines):
        if _SIGNATURE.match(line) or any(p.match(line) for p in _HISTORY):
            break
        if _WROTE_START.match(line) and i + 1 < len(lines) and _WROTE_END.match(lines[i + 1]):
            break  # "On …" wrapped before "wrote:"
        if line.lstrip().startswith(">"):
            continue
        kept.append(line.rstrip())
    out = "\n".join(kept)
    return re.sub(r"\n{3,}", "\n\n", out).strip()


def reply_text(msg: EmailMessage) -> str:
    """The reply's text: its plain part, else its HTML part as text; history and signature cut."""
    part = msg.get_body(preferencelist=("plain", "html"))
    if part is None:
        return ""
    text = part_text(part)
    if part.get_content_subtype() == "html":
        text = html_to_text(text)
    return cut_history(text).replace("\x00", "")


def forward_text(text: str, limit: int = FORWARD_CHARS) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"
