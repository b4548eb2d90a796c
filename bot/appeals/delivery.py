"""Sending the email route's package to the platform's mailbox (SMTP, aiosmtplib).

The package already holds the RFC 5322 message (email.eml.enc); sending adds From/To, keeps the
stable Message-ID `<appeal id@dayu-bot.invalid>`, and fits the size limit (`smtp_max_mb`):
photos are re-encoded (JPEG, longest side <= 2,000 px) only when the whole is too large; if the
video alone still makes it too large it is re-encoded smaller with PyAV (H.264, <= 720p); if it
still does not fit, the send is refused (the creator is told to use 在线人工客服).

Errors are classified: a 5xx reply (or an authentication refusal) is permanent; connection
errors, timeouts and 4xx replies are temporary and retried with backoff by the caller.
"""
from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import aiosmtplib

from bot.appeals.crypto import Vault
from bot.appeals.package import EMAIL_EML, ENC, message_id_of, read_package_file  # noqa: F401 (message_id_of: re-exported)

log = logging.getLogger(__name__)

MAX_PHOTO_SIDE = 2000
MAX_VIDEO_HEIGHT = 720


class SendError(Exception):
    def __init__(self, reason: str, permanent: bool):
        super().__init__(reason)
        self.reason, self.permanent = reason, permanent


class TooLarge(SendError):
    def __init__(self, size: int):
        super().__init__(f"即使压缩后仍有 {size / 1024 / 1024:.1f} MB,超过邮件大小上限", permanent=True)


@dataclass(frozen=True)
class Sent:
    message_id: str
    size: int
    reencoded: tuple[str, ...]  # names of attachments that were re-encoded to fit


def smtp_enabled(settings) -> bool:
    """Sending happens only with an SMTP server and the mailbox address both configured."""
    return bool(settings.smtp_host and settings.appeal_email)


def _password(settings) -> str | None:
    if settings.smtp_password_file:
        return Path(settings.smtp_password_file).read_text(encoding="utf-8").strip()
    return settings.smtp_password or None


def load_message(settings, vault: Vault, appeal_id: str, area=None, name: str = EMAIL_EML) -> EmailMessage:
    raw = read_package_file(settings, vault, appeal_id, name + ENC, area)
    return BytesParser(policy=policy.default).parsebytes(raw)


def _size(msg: EmailMessage) -> int:
    return len(msg.as_bytes(policy=policy.SMTP))


def _attachments(msg: EmailMessage) -> list[EmailMessage]:
    return list(msg.iter_attachments())


def _shrink_photo(data: bytes) -> bytes | None:
    from PIL import Image, ImageOps

    with Image.open(io.BytesIO(data)) as img:
        img = ImageOps.exif_transpose(img)
        img.thumbnail((MAX_PHOTO_SIDE, MAX_PHOTO_SIDE))
        out = io.BytesIO()
        img.convert("RGB").save(out, "JPEG", quality=85, optimize=True)
    return out.getvalue()


def _shrink_video(data: bytes, bitrate: int) -> bytes:
    """Re-encode to H.264 (libx264), at most 720p, at about `bitrate` bits per second; no audio."""
    import av

    src = av.open(io.BytesIO(data))
    out_buf = io.BytesIO()
    dst = av.open(out_buf, mode="w", format="mp4")
    try:
        vin = src.streams.video[0]
        w, h = vin.codec_context.width, vin.codec_context.height
        scale = min(1.0, MAX_VIDEO_HEIGHT / max(1, min(w, h)))
        ow, oh = max(2, int(w * scale) // 2 * 2), max(2, int(h * scale) // 2 * 2)
        rate = vin.average_rate or 25
        vout = dst.add_stream("libx264", rate=rate)
        vout.width, vout.height, vout.pix_fmt = ow, oh, "yuv420p"
        vout.bit_rate = bitrate
        vout.options = {"preset": "veryfast"}
        for frame in src.decode(vin):
            frame = frame.reformat(width=ow, height=oh, format="yuv420p")
            frame.pts = None
            for packet in vout.encode(frame):
                dst.mux(packet)
        for packet in vout.encode():
            dst.mux(packet)
    finally:
        dst.close()
        src.close()
    return out_buf.getvalue()


def _video_seconds(data: bytes) -> float:
    import av

    with av.open(io.BytesIO(data)) as c:
        if c.duration:
            return c.duration / 1_000_000
        s = c.streams.video[0]
        return float(s.duration * s.time_base) if s.duration else 10.0


def fit(msg: EmailMessage, max_bytes: int) -> tuple[EmailMessage, tuple[str, ...]]:
    """The message within `max_bytes`, re-encoding photos then the video only as needed."""
    if _size(msg) <= max_bytes:
        return msg, ()
    reencoded = []
    for part in _attachments(msg):
        if part.get_content_maintype() == "image":
            small = _shrink_photo(part.get_content())
            if small is not None:
                name = Path(part.get_filename() or "photo").with_suffix(".jpg").name
                part.set_content(small, maintype="image", subtype="jpeg", filename=name)
                reencoded.append(name)
    if _size(msg) <= max_bytes:
        return msg, tuple(reencoded)
    videos = [p for p in _attachments(msg) if p.get_content_maintype() == "video"]
    for part in videos:
        data = part.get_content()
        budget = max_bytes - (_size(msg) - len(data) * 4 // 3) - 64 * 1024  # room left, base64 counted
        seconds = max(1.0, _video_seconds(data))
        bitrate = max(100_000, int(budget * 3 / 4 * 8 / seconds * 0.9))
        small = _shrink_video(data, bitrate)
        name = Path(part.get_filename() or "video").with_suffix(".mp4").name
        part.set_content(small, maintype="video", subtype="mp4", filename=name)
        reencoded.append(name)
    size = _size(msg)
    if size > max_bytes:
        raise TooLarge(size)
    return msg, tuple(reencoded)


@dataclass(frozen=True)
class Prepared:
    data: bytes  # the serialised message (serialising 25 MB is blocking work too)
    sender: str
    recipient: str
    reencoded: tuple[str, ...]


def prepare(settings, vault: Vault, appeal_id: str, area=None, round_no: int = 0) -> Prepared:
    """The message to send (blocking work: decrypting, maybe re-encoding: run it in a thread);
    `round_no` > 0: that supplement round's follow-up email."""
    from bot.appeals.supplement import eml_name, followup_message_id

    msg = load_message(settings, vault, appeal_id, area, eml_name(round_no))
    del msg["X-Unsent"]
    del msg["From"]
    del msg["To"]
    del msg["Message-ID"]
    msg["From"] = settings.smtp_from or settings.smtp_user or f"dayu-bot@{settings.smtp_host}"
    msg["To"] = settings.appeal_email
    msg["Message-ID"] = followup_message_id(appeal_id, round_no)  # the same on every attempt
    msg, reencoded = fit(msg, int(settings.smtp_max_mb * 1024 * 1024))
    return Prepared(msg.as_bytes(policy=policy.SMTP), msg["From"], settings.appeal_email, reencoded)


async def send(settings, prepared: Prepared) -> None:
    """One SMTP delivery attempt; raises SendError (permanent or temporary)."""
    security = settings.smtp_security
    try:
        await aiosmtplib.send(
            prepared.data, sender=prepared.sender, recipients=[prepared.recipient],
            hostname=settings.smtp_host, port=settings.smtp_port,
            username=settings.smtp_user or None, password=_password(settings) if settings.smtp_user else None,
            use_tls=security == "ssl", start_tls=True if security == "starttls" else False,
            timeout=settings.smtp_timeout_seconds)
    except aiosmtplib.SMTPRecipientsRefused as exc:
        codes = [e.code for e in exc.recipients]
        raise SendError(f"收件地址被拒绝({', '.join(map(str, codes))})", permanent=all(c >= 500 for c in codes))
    except aiosmtplib.SMTPResponseException as exc:
        raise SendError(f"邮件服务器拒绝({exc.code} {exc.message[:80]})", permanent=exc.code >= 500)
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        raise SendError(f"连接邮件服务器失败({type(exc).__name__})", permanent=False)
