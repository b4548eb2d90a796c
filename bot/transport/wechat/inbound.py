"""Messages and files from WeChat to the engine: a Wechaty message becomes an `Incoming` (its room,
its @mention, its attachment downloaded to the inbox under the size cap), the engine's replies go
to the outbox; friend requests with a keyword are accepted and greeted."""
from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import secrets
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import AsyncIterator

from bot.messages import Attachment, Incoming, Outgoing

log = logging.getLogger(__name__)


STALE_GRACE = timedelta(seconds=5)  # clock skew allowed between the gateway and us

TOO_LARGE_TEXT = ("你发送的文件超过 {mb} MB，无法接收。请压缩或截取关键部分后重新发送；"
                  "如果仍然过大，可以改用邮件提交材料。")
DOWNLOAD_FAILED_TEXT = "文件接收失败，请稍后重新发送。"
ENGINE_FAILED_TEXT = "抱歉，系统暂时出了点问题，请稍后再发一次。"


class AttachmentTooLarge(Exception):
    pass


class Inbound:
    """The receiving side of `WechatTransport` (a mixin)."""

    async def _on_message(self, client, msg) -> None:
        mid = msg.message_id
        self._inflight += 1
        try:
            await self._handle_message(client, msg)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - one bad message must not kill the stream
            log.exception("message %s failed: %s", mid, type(exc).__name__)
        finally:
            self._inflight -= 1

    async def _handle_message(self, client, msg) -> None:
        wx = self._wx
        mid = msg.message_id
        if not self._accepting or mid in self._recent:
            return
        self._remember(mid)
        if msg.is_self():
            return
        payload = msg.payload
        at = _utc_from_timestamp(float(payload.timestamp or 0))
        if at < self.started_at - STALE_GRACE:
            log.info("skip message %s from before start (%s)", mid, at.isoformat(timespec="seconds"))
            return
        mtype = msg.type()
        kind = wx.kinds.get(mtype)
        if kind is None:
            log.info("ignore message %s of type %s", mid, getattr(mtype, "name", mtype))
            return
        room = msg.room()
        talker = msg.talker()
        sender = talker.contact_id
        chat = room.room_id if room is not None else sender
        if room is not None:
            self._rooms.add(chat)  # room filtering (modes, allow-list) is the engine's
        text, mention = "", False
        if kind == "text":
            text = msg.text() or ""
            if room is not None:
                mention = bool(await msg.mention_self())
                text = await msg.mention_text()
                if not mention and self._self_name and f"@{self._self_name}" in text:
                    mention = True  # a typed @name without mention ids
                    text = text.replace(f"@{self._self_name}", "", 1)
                text = text.strip()
        attachment = None
        if kind != "text":
            try:
                path = await self._download(client, msg, kind)
            except AttachmentTooLarge as exc:
                log.info("message %s: %s over the %s MB cap (%s)", mid, kind, self.settings.max_attachment_mb, exc)
                if room is None:
                        self.outbox.put(Outgoing(chat=chat, to=sender,
                                             text=TOO_LARGE_TEXT.format(mb=_fmt_mb(self.settings.max_attachment_mb))))
                return
            except Exception as exc:  # noqa: BLE001
                log.warning("message %s: %s download failed: %s", mid, kind, type(exc).__name__)
                if room is None:
                    self.outbox.put(Outgoing(chat=chat, to=sender, text=DOWNLOAD_FAILED_TEXT))
                return
            attachment = Attachment(path=path, kind=kind)  # type: ignore[arg-type]
        incoming = Incoming(message_id=mid, chat=chat, sender=sender, text=text, at=at,
                            sender_name=getattr(talker, "name", "") or "", room=room is not None,
                            mention=mention, attachment=attachment)
        log.info("in %s kind=%s room=%s mention=%s len=%d", mid, kind, incoming.room, mention,
                 len(text) if kind == "text" else (attachment.path.stat().st_size if attachment else 0))
        try:
            replies = await self.engine.handle(incoming)
        except Exception as exc:  # noqa: BLE001
            log.exception("engine failed on message %s: %s", mid, type(exc).__name__)
            if room is None or mention:
                self.outbox.put(Outgoing(chat=chat, to=sender, mention=room is not None, text=ENGINE_FAILED_TEXT))
            return
        finally:
            # The engine keeps what it needs (encrypted, elsewhere); the downloaded copy is ours.
            if attachment is not None:
                with contextlib.suppress(OSError):
                    attachment.path.unlink(missing_ok=True)
        for reply in replies or []:
            self._put(reply)
        if replies:
            log.info("out %s: %d replies", mid, len(replies))

    def _remember(self, mid: str) -> None:
        self._recent[mid] = None
        while len(self._recent) > 4096:
            self._recent.popitem(last=False)

    async def _on_friendship(self, client, friendship) -> None:
        wx = self._wx
        fid = friendship.friendship_id
        try:
            if friendship.type() != wx.FriendshipType.FRIENDSHIP_TYPE_RECEIVE:
                return
            hello = (friendship.hello() or "").casefold()
            keywords = [k.casefold() for k in self.settings.friend_keywords if k.strip()]
            if not any(k in hello for k in keywords):
                log.info("friend request %s left pending (no keyword in a %d-char greeting)", fid, len(hello))
                return
            await friendship.accept()
            contact_id = friendship.contact().contact_id
            log.info("friend request %s accepted", fid)
            greeting = self.engine.greeting()
            if greeting:
                self.outbox.put(Outgoing(chat=contact_id, to=contact_id, text=greeting))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001
            log.warning("friend request %s failed: %s", fid, type(exc).__name__)

    # -- attachments ------------------------------------------------------------------------
    async def _download(self, client, msg, kind: str) -> Path:
        cap = int(self.settings.max_attachment_mb * 1024 * 1024)
        self.inbox.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.inbox, 0o700)
        tmp = self.inbox / f".{secrets.token_hex(16)}.part"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            size = 0
            with os.fdopen(fd, "wb") as fh:
                async for chunk in self._file_chunks(client, msg, kind, cap):
                    size += len(chunk)
                    if size > cap:
                        raise AttachmentTooLarge(f"more than {size} bytes")
                    fh.write(chunk)
            if size == 0:
                raise EOFError("empty file")
            final = tmp.with_name(secrets.token_hex(16) + _sniff_extension(tmp, kind))
            os.replace(tmp, final)
            return final
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise

    async def _file_chunks(self, client, msg, kind: str, cap: int) -> AsyncIterator[bytes]:
        """The file's bytes: inline base64 from the unary RPC, else the streaming RPC."""
        wx = self._wx
        stub = client.puppet.puppet_stub
        mid = msg.message_id
        if kind == "image":
            resp = await asyncio.wait_for(stub.message_image(id=mid, type=wx.ImageType.IMAGE_TYPE_HD), 60)
        else:
            resp = await asyncio.wait_for(stub.message_file(id=mid), 60)
        try:
            box = json.loads(resp.filebox or "{}")
        except ValueError:
            box = {}
        size = box.get("size")
        if isinstance(size, int) and size > cap:
            raise AttachmentTooLarge(f"{size} bytes announced")
        if box.get("boxType", box.get("type")) == 1 and box.get("base64"):  # Base64 FileBox
            yield base64.b64decode(box["base64"])
            return
        # Node gateways inline only FileBoxes up to ~20 KB; larger ones are UUID boxes.
        if kind == "image":
            stream = stub.message_image_stream(id=mid, type=wx.ImageType.IMAGE_TYPE_HD)
        else:
            stream = stub.message_file_stream(id=mid)
        async with contextlib.aclosing(stream):
            async for resp in stream:
                field, value = wx.betterproto.which_one_of(resp.file_box_chunk, "payload")
                if field == "data" and value:
                    yield value


def _utc_from_timestamp(ts: float) -> datetime:
    if ts > 2145888000:  # milliseconds (same rule as wechaty's timestamp_to_date)
        ts = ts / 1000
    return datetime.fromtimestamp(ts, tz=timezone.utc)


def _sniff_extension(path: Path, kind: str) -> str:
    try:
        import filetype  # project dependency; optional here
        guess = filetype.guess(str(path))
        if guess is not None:
            return "." + guess.extension
    except Exception:  # noqa: BLE001 - sniffing is best effort
        pass
    return {"image": ".img", "video": ".video"}.get(kind, ".bin")


def _fmt_mb(mb: float) -> str:
    return f"{mb:g}"
