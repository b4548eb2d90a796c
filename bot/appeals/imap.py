"""The platform's replies, read from the appeals' mailbox by IMAP on the engine's tick.

When `imap_host` is set, each tick polls when due (`imap_poll_seconds`; 0 = every tick), one
process at a time (`store.exclusive("imap")`: PostgreSQL's advisory try-lock; several processes
share the store). A poll logs in, EXAMINEs `imap_mailbox` (read-only: flags never change) and
reads only what arrived since the last poll: UIDs above the position kept in the store
(`imap_state`), under the mailbox's UIDVALIDITY (when it changes, the whole mailbox is read again;
replies already stored are recognised by their Message-ID and not taken twice). Headers first;
the body (BODY.PEEK) only of a message that is a reply to an appeal. Mail is never marked, moved
or deleted.

A message is a reply to an appeal when its In-Reply-To or References holds the Message-ID of one
of our emails (`appeal_thread`), else when its subject is "Re:"/"回复:"/"答复:"/"Fwd:"… + the
subject of exactly one appeal's first email. Anything else is left alone.

A reply: its text (the plain part decoded from any charset and transfer encoding, else the HTML
part reduced to text; quoted history and signature cut) is stored encrypted with the appeal, with
the status it suggests (never applied); the appeal's status becomes `replied` (history: by
"imap"), and the creator is told in their DM through the outbox (unless `reply_forward` is
false). Reply, status, notification and the mailbox position commit together.

Errors (server down, login refused, a timeout) are logged in one line; the next due poll tries
again; the tick never fails because of them.
"""
from __future__ import annotations

import asyncio
import hashlib
import imaplib
import logging
import re
import ssl
from dataclasses import dataclass, field
from datetime import datetime
from email import policy
from email.parser import BytesParser
from pathlib import Path

from bot import metrics
from bot.appeals.reply_text import (
    FORWARD_CHARS, cut_history, forward_text, has_reply_prefix, html_to_text, message_ids, part_text, reply_text,
    strip_prefixes, suggest,
)
from bot.messages import Outgoing
from bot.store import Writes

log = logging.getLogger(__name__)

# what a reply says (reply_text.py), here too for those who read it from this module
__all__ = ["FORWARD_CHARS", "ImapError", "ReplyReader", "cut_history", "forward_text", "has_reply_prefix",
           "html_to_text", "imap_enabled", "message_ids", "open_mailbox", "part_text", "reply_text",
           "strip_prefixes", "suggest"]

MAX_PER_POLL = 500  # messages looked at per poll; the rest on the next one
MAX_REPLY_BYTES = 4 * 1024 * 1024  # what is fetched of one reply (its text comes first)
HEADER_FIELDS = "MESSAGE-ID IN-REPLY-TO REFERENCES SUBJECT"


# -- the IMAP side (blocking: run in a thread) ---------------------------------------------------
class ImapError(Exception):
    """A poll could not be done (connection, login, mailbox): logged, tried again when next due."""


def imap_enabled(settings) -> bool:
    return bool(settings.imap_host)


def _password(settings) -> str:
    if settings.imap_password_file:
        lines = Path(settings.imap_password_file).read_text(encoding="utf-8").splitlines()
        return lines[0].strip() if lines else ""
    return settings.imap_password


@dataclass
class Headers:
    uid: int
    size: int
    message_id: str | None
    in_reply_to: list[str]
    references: list[str]
    subject: str


@dataclass
class Mailbox:
    """One poll's session: the mailbox's UIDVALIDITY and the new messages' headers."""
    conn: imaplib.IMAP4
    uidvalidity: int
    new: list[Headers] = field(default_factory=list)
    more: bool = False  # more than MAX_PER_POLL were waiting


def _connect(settings) -> imaplib.IMAP4:
    timeout = settings.imap_timeout_seconds
    if settings.imap_security == "ssl":
        return imaplib.IMAP4_SSL(settings.imap_host, settings.imap_port, ssl_context=ssl.create_default_context(),
                                 timeout=timeout)
    conn = imaplib.IMAP4(settings.imap_host, settings.imap_port, timeout=timeout)
    if settings.imap_security == "starttls":
        conn.starttls(ssl_context=ssl.create_default_context())
    return conn


def _check(typ, data, what: str):
    if typ != "OK":
        detail = b" ".join(d for d in data if isinstance(d, bytes)).decode("utf-8", "replace")[:120]
        raise ImapError(f"{what}: {typ} {detail}".strip())
    return data


_UID = re.compile(rb"\bUID (\d+)")
_SIZE = re.compile(rb"\bRFC822\.SIZE (\d+)")


def _fetched(data) -> list[tuple[int, int, bytes]]:
    """(uid, size, literal) of each message in an imaplib FETCH answer, whatever the items' order."""
    out = []
    pending = None  # (meta, literal) waiting for a UID given after the literal
    for item in data:
        if isinstance(item, tuple):
            meta, literal = item[0], item[1]
            uid, size = _UID.search(meta), _SIZE.search(meta)
            if uid:
                out.append((int(uid.group(1)), int(size.group(1)) if size else 0, literal))
                pending = None
            else:
                pending = (meta, literal)
        elif isinstance(item, bytes) and pending is not None:
            meta = pending[0] + item
            uid, size = _UID.search(meta), _SIZE.search(meta)
            if uid:
                out.append((int(uid.group(1)), int(size.group(1)) if size else 0, pending[1]))
            pending = None
    return out


def open_mailbox(settings, position: tuple[int, int] | None) -> Mailbox:
    """Log in, EXAMINE the mailbox, list what is new since `position` (uidvalidity, last_uid)."""
    conn = None
    try:
        conn = _connect(settings)
        conn.login(settings.imap_user, _password(settings))
        _check(*conn.select(_quote(settings.imap_mailbox), readonly=True), "EXAMINE")  # read-only
        validity = conn.response("UIDVALIDITY")[1]
        if not validity or validity[0] is None:
            raise ImapError("the server gave no UIDVALIDITY")
        uidvalidity = int(validity[0])
        last = position[1] if position is not None and position[0] == uidvalidity else 0
        data = _check(*conn.uid("SEARCH", None, f"UID {last + 1}:*"), "SEARCH")
        uids = sorted(u for u in (int(x) for x in b" ".join(d or b"" for d in data).split()) if u > last)
        box = Mailbox(conn, uidvalidity, more=len(uids) > MAX_PER_POLL)
        uids = uids[:MAX_PER_POLL]
        if uids:
            data = _check(*conn.uid("FETCH", ",".join(map(str, uids)),
                                    f"(UID RFC822.SIZE BODY.PEEK[HEADER.FIELDS ({HEADER_FIELDS})])"), "FETCH")
            parser = BytesParser(policy=policy.default)
            for uid, size, raw in sorted(_fetched(data)):
                try:
                    h = parser.parsebytes(raw, headersonly=True)
                    box.new.append(Headers(uid, size, (message_ids(h["Message-ID"]) or [None])[0],
                                           message_ids(h["In-Reply-To"]), message_ids(h["References"]),
                                           str(h["Subject"] or "").replace("\x00", "")))
                except Exception as exc:  # a header the parser cannot read: left alone
                    log.warning("imap: uid %d: unreadable header (%s); left alone", uid, type(exc).__name__)
                    box.new.append(Headers(uid, size, None, [], [], ""))
        return box
    except BaseException:
        if conn is not None:
            _close(conn)
        raise


def _quote(mailbox: str) -> str:
    return '"' + mailbox.replace("\\", "\\\\").replace('"', '\\"') + '"'


def fetch_body(conn: imaplib.IMAP4, uid: int) -> bytes:
    """The message (its first MAX_REPLY_BYTES), without setting \\Seen."""
    data = _check(*conn.uid("FETCH", str(uid), f"(UID BODY.PEEK[]<0.{MAX_REPLY_BYTES}>)"), "FETCH")
    got = _fetched(data)
    if not got:
        raise ImapError(f"FETCH {uid}: no body")
    return got[0][2]


def _close(conn: imaplib.IMAP4) -> None:
    try:
        conn.logout()
    except Exception:  # already gone
        pass


def _reason(exc: BaseException) -> str:
    detail = " ".join(str(exc).split())[:160]
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


# -- the poller the engine calls on its tick ---------------------------------------------------
class ReplyReader:
    """Polls the mailbox when due (see the module docstring). Counters for metrics:
    `polls_ok`, `polls_failed`, `replies_taken`, `left_alone`, `last_error`."""

    def __init__(self, engine):
        self.engine = engine
        self.last_poll: datetime | None = None
        self.polls_ok = 0
        self.polls_failed = 0
        self.replies_taken = 0
        self.left_alone = 0
        self.last_error: str | None = None
        self._polling = asyncio.Lock()  # one poll at a time in this process too

    def due(self, now: datetime) -> bool:
        s = self.engine.settings
        if not imap_enabled(s):
            return False
        if self.last_poll is None or now < self.last_poll:  # first poll, or the clock went back
            return True
        return (now - self.last_poll).total_seconds() >= s.imap_poll_seconds

    async def work(self, now: datetime) -> list[Outgoing]:
        """Poll when due; returns the notifications committed. Never raises."""
        if not self.due(now) or self._polling.locked():
            return []
        self.last_poll = now
        try:
            async with self._polling:
                with self.engine.store.exclusive("imap") as mine:
                    if not mine:  # another process is polling now
                        return []
                    out = await self.poll(now)
        except Exception as exc:
            self.polls_failed += 1
            metrics.IMAP_POLLS.labels("failed").inc()
            self.last_error = _reason(exc)
            log.warning("imap: poll of %s@%s failed (%s); trying again at the next poll",
                        self.engine.settings.imap_mailbox, self.engine.settings.imap_host, self.last_error)
            return []
        self.polls_ok += 1
        metrics.IMAP_POLLS.labels("ok").inc()
        self.last_error = None
        return out

    async def poll(self, now: datetime) -> list[Outgoing]:
        settings, store = self.engine.settings, self.engine.store
        mailbox = settings.imap_mailbox
        position = store.imap_position(mailbox)
        box = await asyncio.to_thread(open_mailbox, settings, position)
        out: list[Outgoing] = []
        try:
            if position is not None and position[0] != box.uidvalidity:
                log.info("imap: %s has a new UIDVALIDITY (%d, was %d): reading it again", mailbox,
                         box.uidvalidity, position[0])
            last = position[1] if position is not None and position[0] == box.uidvalidity else 0
            for h in box.new:
                writes = Writes()
                replies: list[Outgoing] = []
                appeal_id = self.match(h)
                if appeal_id is None:
                    self.left_alone += 1
                else:
                    raw = await asyncio.to_thread(fetch_body, box.conn, h.uid)
                    replies = self.take(writes, appeal_id, h, raw, now)
                last = max(last, h.uid)
                writes.set_imap_position(mailbox, box.uidvalidity, last)  # with the reply: read once
                store.commit_turn(None, None, now, writes, replies)
                out += replies
            if not box.new and position != (box.uidvalidity, last):
                writes = Writes()  # a new (or recreated) mailbox with nothing new: remember its validity
                writes.set_imap_position(mailbox, box.uidvalidity, last)
                store.commit_turn(None, None, now, writes, [])
        finally:
            await asyncio.to_thread(_close, box.conn)
        if box.more:
            self.last_poll = None  # more waiting: the next tick goes on
        return out

    def match(self, h: Headers) -> str | None:
        """The appeal a message replies to, or None (left alone)."""
        store = self.engine.store
        if h.message_id and store.appeal_of_message_id(h.message_id):
            return None  # one of our own emails (a copy in the mailbox)
        refs = [*h.in_reply_to, *reversed(h.references)]
        for find in (store.appeal_of_message_id, store.appeal_of_reply):  # ours, then the platform's earlier reply
            for mid in refs:
                appeal_id = find(mid)
                if appeal_id:
                    return appeal_id
        if has_reply_prefix(h.subject):
            found = store.appeals_with_subject(strip_prefixes(h.subject))
            if len(found) == 1:
                return found[0]
        return None

    def take(self, writes: Writes, appeal_id: str, h: Headers, raw: bytes, now: datetime) -> list[Outgoing]:
        """Store the reply with its appeal, set `replied`, tell the creator; [] when seen before."""
        store, settings = self.engine.store, self.engine.settings
        appeal = store.appeal(appeal_id)
        message_id = h.message_id or f"<{hashlib.sha256(raw).hexdigest()[:32]}@no-message-id.invalid>"
        if appeal is None or store.thread_has(appeal_id, "reply", message_id):
            return []  # the appeal was deleted, or this reply was taken before (UIDVALIDITY changed, a copy)
        try:
            text = reply_text(BytesParser(policy=policy.default).parsebytes(raw))
        except Exception as exc:  # a body the parser cannot read: kept, without its text
            log.warning("imap: appeal %s: the reply's text cannot be read (%s)", appeal_id, type(exc).__name__)
            text = ""
        suggested = suggest(text)
        writes.add_thread(appeal_id, "reply", now, message_id=message_id, subject=h.subject or None, body=text,
                          suggested=suggested, in_reply_to=(h.in_reply_to or [None])[0])
        writes.set_status(appeal_id, "replied", now, "imap")
        self.replies_taken += 1
        log.info("imap: appeal %s: reply taken (suggests %s)", appeal_id, suggested or "nothing")
        if not settings.reply_forward:
            return []
        words = self.engine.snapshot.kb.responses["appeal_replied"].format_map(  # (render's own argument is `text`)
            {"appeal_id": appeal_id, "text": forward_text(text)})
        return [Outgoing(chat=appeal["sender"], to=appeal["sender"], text=words, appeal_id=appeal_id,
                         account=appeal.get("account") or None)]
