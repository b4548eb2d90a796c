"""Replies from the outbox to WeChat: each sent by the gateway's puppet calls (a room reply with its
@mention), and its durable row marked sent right after the gateway took it."""
from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from pathlib import Path

from bot.messages import Outgoing

log = logging.getLogger(__name__)


AT_SEPARATOR = "\u2005"  # what WeChat puts after "@name"


class Outbound:
    """The sending side of `WechatTransport` (a mixin)."""

    def _put(self, reply: Outgoing) -> None:
        if reply.outbox_id is not None:
            if reply.outbox_id in self._queued:
                return
            self._queued.add(reply.outbox_id)
        self.outbox.put(reply)

    def _requeue_unsent(self) -> None:
        unsent = getattr(self.engine, "unsent", None)
        if unsent is None:
            return
        replies = unsent()
        if replies:
            log.info("re-queueing %d replies committed but not sent", len(replies))
        for reply in replies:
            self._put(reply)

    def _sent(self, out: Outgoing) -> None:
        """Mark the durable row sent, right after the gateway took it (at-least-once point)."""
        if out.outbox_id is not None and hasattr(self.engine, "mark_sent"):
            self.engine.mark_sent([out])
            self._queued.discard(out.outbox_id)

    def _is_room(self, chat: str) -> bool:
        return chat in self._rooms or chat.endswith("@chatroom")

    async def _send(self, out: Outgoing) -> None:
        await asyncio.wait_for(self._online.wait(), self.opts.send_wait)
        session = self._session
        if session is None or session.client is None:
            raise ConnectionError("not connected")
        client = session.client
        puppet = client.puppet
        wx = self._wx
        # Puppet calls rather than Room.say()/Contact.say(): those reload the sent message
        # afterwards and raise when that fails, which would make the outbox resend it.
        if out.file is not None:
            data = Path(out.file).read_bytes()
            box = wx.FileBox.from_base64(base64.b64encode(data), name=Path(out.file).name)
            await asyncio.wait_for(puppet.message_send_file(conversation_id=out.chat, file=box), 120)
            log.info("sent file to %s (%d bytes)", "room" if self._is_room(out.chat) else "dm", len(data))
            self._sent(out)
            return
        text, mention_ids = out.text, None
        if out.mention and out.to and self._is_room(out.chat):
            name = await self._member_name(client, out.chat, out.to)
            text = f"@{name}{AT_SEPARATOR}{text}"
            mention_ids = [out.to]
        await asyncio.wait_for(puppet.message_send_text(conversation_id=out.chat, message=text,
                                                        mention_ids=mention_ids), 30)
        log.info("sent text to %s (len=%d mention=%s)", "room" if self._is_room(out.chat) else "dm",
                 len(text), bool(mention_ids))
        self._sent(out)

    async def _member_name(self, client, room_id: str, contact_id: str) -> str:
        contact = client.Contact.load(contact_id)
        with contextlib.suppress(Exception):
            alias = await client.Room.load(room_id).alias(contact)
            if alias:
                return alias
        with contextlib.suppress(Exception):
            await contact.ready()
            return contact.name or contact_id
        return contact_id
