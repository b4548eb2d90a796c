"""Transport-neutral message model: what every transport hands to the engine and gets back."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal

AttachmentKind = Literal["image", "video", "file"]


@dataclass(frozen=True)
class Attachment:
    path: Path  # a local file the transport already downloaded
    kind: AttachmentKind


@dataclass(frozen=True)
class Incoming:
    message_id: str
    chat: str  # room id, or the sender's id for a DM
    sender: str  # contact id
    text: str = ""
    at: datetime | None = None  # timestamp (aware); None = now
    sender_name: str = ""
    room: bool = False  # True when `chat` is a room
    mention: bool = False  # the bot was @mentioned (rooms)
    attachment: Attachment | None = None

    @property
    def conversation_key(self) -> tuple[str, str]:
        return (self.chat, self.sender)


@dataclass
class Outgoing:
    chat: str
    to: str  # the user this reply is about/for
    text: str = ""
    mention: bool = False  # @mention `to` (rooms)
    file: Path | None = None
    # Introspection for tests and the replay runner; transports ignore these.
    prompt_id: int | None = None
    state: str | None = None
    awaiting: str | None = None
    appeal_id: str | None = None
    meta: dict = field(default_factory=dict)
    # Delivery: the message this replies to (None for reminders and notifications), and its row
    # in the store's outbox once committed (transports mark it sent after sending).
    reply_to: str | None = None
    outbox_id: int | None = None
    # The WeChat account that sends it (several share one store); None = this process's account.
    account: str | None = None
