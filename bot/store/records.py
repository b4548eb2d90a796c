"""What the store reads and writes per turn, without SQL: `Conversation`, `Writes` (what one turn
writes besides the conversation), `TurnHold`, the appeal statuses, the store's errors, and how
creators' texts are redacted for operators (`operator_text`)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone

from bot.dialog.validators import find_id_numbers
from bot.privacy import redact

# Appeal statuses: set by the bot, then by operators.
# `replied`: the platform answered by email (bot/appeals/imap.py), before an operator decides.
BOT_STATUSES = ("ready", "queued", "sent", "replied", "failed")
OPERATOR_STATUSES = ("reviewing", "resolved", "rejected", "need_more")
DEFAULT_ACCOUNT = "main"


class KeyMismatch(Exception):
    """The data was written with another encryption key."""


class AlreadyProcessed(Exception):
    """Another process committed this message id first: the turn is dropped whole."""


def _iso(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).isoformat()


def _parse(s: str) -> datetime:
    return datetime.fromisoformat(s)


def operator_text(text: str | None) -> str:
    """A creator's message as operators may see it: whitespace collapsed, redacted (ID-number-like
    sequences, mobiles, paths masked), at most 120 characters; "" (record nothing) when it is empty
    or holds a (checksum-valid) ID number, before or after redaction."""
    collapsed = " ".join((text or "").split())
    if find_id_numbers(collapsed):
        return ""
    out = redact(collapsed)[:120]
    return "" if not out or find_id_numbers(out) else out


@dataclass
class Conversation:
    chat: str
    sender: str
    state: str = "idle"
    data: dict = field(default_factory=dict)
    last_activity: datetime | None = None
    reminded: bool = False
    account: str = ""  # the WeChat account the creator last wrote to: reminders go out through it

    @property
    def key(self) -> tuple[str, str]:
        return (self.chat, self.sender)


@dataclass
class TurnHold:
    """What `SqlStore.turn` yields: whether this process holds the conversation, and, read once it
    does, whether the message id was already handled and the conversation as committed (decoded
    on first use: an admin command or a failed turn's answer never needs it, nor fails on it)."""
    held: bool
    processed: bool = False
    load: Callable[[], Conversation] | None = None
    _conversation: Conversation | None = None

    @property
    def conversation(self) -> Conversation:
        if self._conversation is None:
            self._conversation = self.load()
        return self._conversation

    def __bool__(self) -> bool:
        return self.held


@dataclass
class Writes:
    """What one turn writes besides the conversation: collected by the dialog, committed by
    `Store.commit_turn` in the turn's transaction. `after_commit` holds file keys to delete once
    the state that no longer references them is committed (a crash before leaves them to the janitor)."""
    events: list[tuple[str, datetime, int | None]] = field(default_factory=list)
    unmatched: list[tuple[str, datetime]] = field(default_factory=list)
    not_understood: list[tuple[str, str, str, datetime]] = field(default_factory=list)  # (text, state, awaiting, at)
    appeals: list[tuple] = field(default_factory=list)
    statuses: list[tuple] = field(default_factory=list)  # (appeal_id, status, at, by, note, message_id)
    sends: list[tuple] = field(default_factory=list)  # (appeal_id, next_at, attempts, error) or (appeal_id, None, ...)
    deleted_users: list[str] = field(default_factory=list)
    after_commit: list[str] = field(default_factory=list)
    # (appeal_id, kind, at, message_id, subject, body, suggested, in_reply_to): the appeal's email thread
    threads: list[tuple] = field(default_factory=list)
    imap_positions: list[tuple[str, int, int]] = field(default_factory=list)  # (mailbox, uidvalidity, last_uid)
    meta: list[tuple[str, bytes | None]] = field(default_factory=list)  # (key, value or None = delete)
    # (conv, chat, sender, at, state_before, state_after, prompt_id, misread, payload): one turn's
    # transcript (bot/dialog/transcript.py; the payload is redacted there and encrypted by the store)
    transcripts: list[tuple] = field(default_factory=list)
    reading: dict | None = None  # how the dialog read the message (for the transcript), not stored as such
    # (attempt, step, slot, prompt_id, route, appeal_id, at): the appeal funnel (bot/store/funnel.py)
    funnel: list[tuple] = field(default_factory=list)

    def record(self, kind: str, at: datetime, prompt_id: int | None = None) -> None:
        self.events.append((kind, at, prompt_id))

    def step(self, attempt: str, step: str, at: datetime, prompt_id: int | None = None, slot: str = "",
             route: str | None = None, appeal_id: str | None = None) -> None:
        """A step of the appeal funnel reached by `attempt` (kept once per attempt, step and slot)."""
        if not any(r[0] == attempt and r[1] == step and r[2] == slot for r in self.funnel):
            self.funnel.append((attempt, step, slot, prompt_id, route, appeal_id, at))

    def record_unmatched(self, text: str, at: datetime) -> None:
        self.unmatched.append((text, at))

    def record_not_understood(self, text: str, state: str, awaiting: str | None, at: datetime) -> None:
        """A message the bot did not understand while it waited for an answer in `state` (for
        `awaiting`: an item's slot or a question's name). Redacted here (`operator_text`); nothing
        is recorded when that leaves nothing or an ID number. In the idle state it is an idle
        unmatched message (the `unmatched` table)."""
        text = operator_text(text)
        if not text:
            return
        if not state or state == "idle":
            self.unmatched.append((text, at))
        else:
            self.not_understood.append((text, state, awaiting or "", at))

    def add_appeal(self, appeal_id: str, sender: str, route: str, prompt_id: int | None,
                   masked_identity: str, at: datetime, status: str = "ready") -> None:
        self.appeals.append((appeal_id, sender, route, prompt_id, status, masked_identity, _iso(at)))
        self.set_status(appeal_id, status, at, "bot")

    def set_status(self, appeal_id: str, status: str, at: datetime, by: str, note: str | None = None,
                   message_id: str | None = None) -> None:
        self.statuses.append((appeal_id, status, at, by, note, message_id))

    def queue_send(self, appeal_id: str, next_at: datetime, attempts: int = 0, error: str | None = None) -> None:
        self.sends.append((appeal_id, next_at, attempts, error))

    def set_meta(self, key: str, value: bytes | None) -> None:
        """A small named value in `meta`, written with the turn (None deletes it)."""
        self.meta.append((key, value))

    def add_transcript(self, conv: str, chat: str, sender: str, at: datetime, state_before: str,
                       state_after: str, prompt_id: int | None, misread: list[str], payload: dict) -> None:
        self.transcripts.append((conv, chat, sender, at, state_before, state_after, prompt_id,
                                 ",".join(misread), payload))

    def drop_send(self, appeal_id: str) -> None:
        self.sends.append((appeal_id, None, 0, None))

    def delete_user(self, sender: str) -> None:
        self.deleted_users.append(sender)

    def add_thread(self, appeal_id: str, kind: str, at: datetime, message_id: str | None = None,
                   subject: str | None = None, body: str | None = None, suggested: str | None = None,
                   in_reply_to: str | None = None) -> None:
        """One email of the appeal's thread: `kind` is 'sent' (our email), 'supplement_sent' (our
        follow-up) or 'reply' (the platform's). `body` (the reply's text) is stored encrypted; a row
        already there (same appeal, kind and Message-ID) is left as it is: a reply seen twice is
        taken once."""
        self.threads.append((appeal_id, kind, at, message_id, subject, body, suggested, in_reply_to))

    def set_imap_position(self, mailbox: str, uidvalidity: int, last_uid: int) -> None:
        """The IMAP mailbox read up to `last_uid` under `uidvalidity`, committed with the turn."""
        self.imap_positions.append((mailbox, int(uidvalidity), int(last_uid)))

    def delete_file_later(self, key: str) -> None:
        self.after_commit.append(key)

    def run_after_commit(self, files) -> None:
        for key in self.after_commit:
            files.delete(key)
        self.after_commit.clear()
