"""Keep personal data out of logs: ID numbers, mobile numbers and user file paths.

`setup_logging(level)` is the one call a command needs. Redaction happens twice:
in the LogRecord factory (every record from every logger, whatever handler later gets
it, including handlers added after setup) and as a Filter on the root handlers (records
built by a foreign factory or handed to handlers directly).
"""
from __future__ import annotations

import logging
import os
import re
import sys
from pathlib import Path

from bot.dialog.validators import mask_id_number

__all__ = [
    "redact",
    "RedactingFilter",
    "install_log_redaction",
    "uninstall_log_redaction",
    "setup_logging",
    "safe_path_label",
    "redact_named",
]

_D = "0-9\uff10-\uff19"  # ASCII and full-width digits
_SEP = r"[ \-\u3000\uff0d]"
# Any ID-shaped run, checksum or not: a mistyped ID number is still personal data.
_ID_LIKE = re.compile(rf"(?<![{_D}])[{_D}](?:{_SEP}?[{_D}]){{16}}{_SEP}?[{_D}Xx\uff38\uff58](?![{_D}Xx])")
# Mainland mobile, optionally +86/86 and separators: 138 1234 5678, +86-138-1234-5678.
_MOBILE = re.compile(
    rf"(?<![{_D}+])(?:(?:\+|\uff0b)?(?:86|\uff18\uff16){_SEP}?)?"
    rf"([1\uff11][3-9\uff13-\uff19](?:{_SEP}?[{_D}]){{9}})(?![{_D}])"
)

_IMAGE_EXT = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".heic", ".heif", ".tif", ".tiff"}
_VIDEO_EXT = {".mp4", ".mov", ".m4v", ".3gp", ".mkv", ".webm", ".avi", ".flv", ".wmv", ".mpg"}
_AUDIO_EXT = {".m4a", ".mp3", ".wav", ".aac", ".amr", ".silk", ".ogg", ".opus"}
# Absolute file paths (POSIX or Windows) inside free text; not URLs ("://" is excluded).
_PATH = re.compile(r"(?:(?<![\w.:/])/|\b[A-Za-z]:\\)(?:[^\s'\"<>|:;,]+[/\\])+[^\s'\"<>|:;,]+")


def has_mobile_number(text: str) -> bool:
    """Whether `text` holds a mainland mobile number (with or without +86 and separators)."""
    return bool(_MOBILE.search(text or ""))


def _mask_mobile(m: re.Match) -> str:
    d = "".join(str(int(ch)) for ch in m.group(1) if ch.isdigit())  # int() folds full-width
    return f"{d[:3]}****{d[-4:]}"


def safe_path_label(path: str | os.PathLike | None) -> str:
    """What a log may say about a user file: only its kind, e.g. "<image>"."""
    if path is None:
        return "<none>"
    ext = Path(str(path)).suffix.lower()
    if ext in _IMAGE_EXT:
        return "<image>"
    if ext in _VIDEO_EXT:
        return "<video>"
    if ext in _AUDIO_EXT:
        return "<audio>"
    return "<file>"


def redact(text: str) -> str:
    """Mask ID-number-like sequences (110101********123X), mainland mobiles (138****1234)
    and absolute file paths (<image>, <video>, <file>) in free text."""
    if not text:
        return text
    text = _PATH.sub(lambda m: safe_path_label(m.group(0)), text)
    text = _ID_LIKE.sub(lambda m: mask_id_number(m.group(0)), text)  # NFKC-folds full-width
    return _MOBILE.sub(_mask_mobile, text)


_MASKED_ID = re.compile(r"(?<![0-9])[0-9]{6}\*{8}[0-9]{3}[0-9Xx](?![0-9])")
_MASKED_MOBILE = re.compile(r"(?<![0-9])1[3-9][0-9]\*{4}[0-9]{4}(?![0-9])")
_KIND_NAMES = {"<image>": "〔图片〕", "<video>": "〔视频〕", "<audio>": "〔语音〕", "<file>": "〔文件〕"}


def redact_named(text: str, values: dict[str, str] | None = None) -> str:
    """Redaction for what operators read (transcripts): each personal value replaced by the name of
    what it is. `values` maps values known to the conversation (an item's value) to their item's
    name (longest first: 〔姓名〕); then ID-number-like runs become 〔身份证号〕, mobiles 〔手机号〕 and
    file paths their kind (〔图片〕)."""
    if not text:
        return text or ""
    for value in sorted(values or {}, key=len, reverse=True):
        if value:
            text = text.replace(value, f"〔{values[value]}〕")
    text = _PATH.sub(lambda m: _KIND_NAMES[safe_path_label(m.group(0))], text)
    text = _ID_LIKE.sub("〔身份证号〕", text)
    text = _MASKED_ID.sub("〔身份证号〕", text)  # the bot's own masked echo (110105********002X) too
    text = _MOBILE.sub("〔手机号〕", text)
    return _MASKED_MOBILE.sub("〔手机号〕", text)


class RedactingFilter(logging.Filter):
    """Rewrites a record's message (msg % args), exception and stack text, redacted."""

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        redact_record(record)
        return True


def redact_record(record: logging.LogRecord) -> logging.LogRecord:
    if getattr(record, "_redacted", False):
        return record
    try:
        message = record.getMessage()
    except Exception:  # a bad format string: keep the pieces, redacted
        message = f"{record.msg!s} {record.args!r}"
    record.msg = redact(message)
    record.args = None
    if record.exc_info and not record.exc_text:
        # Formatters reuse exc_text when set, so the traceback text is redacted too.
        record.exc_text = RedactingFilter._formatter.formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)
    record._redacted = True
    return record


_original_factory = None


def install_log_redaction() -> None:
    """Redact every log record from now on (idempotent)."""
    global _original_factory
    if _original_factory is None:
        base = logging.getLogRecordFactory()
        _original_factory = base

        def factory(*args, **kwargs) -> logging.LogRecord:
            return redact_record(base(*args, **kwargs))

        logging.setLogRecordFactory(factory)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())


def uninstall_log_redaction() -> None:
    """Undo `install_log_redaction` (for tests)."""
    global _original_factory
    if _original_factory is not None:
        logging.setLogRecordFactory(_original_factory)
        _original_factory = None
    for handler in logging.getLogger().handlers:
        for f in [f for f in handler.filters if isinstance(f, RedactingFilter)]:
            handler.removeFilter(f)


_HANDLER_NAME = "dayu-bot-stderr"


def setup_logging(level: str = "INFO") -> logging.Handler:
    """Root logging to stderr with redaction; calling it again only changes the level."""
    root = logging.getLogger()
    root.setLevel(level.upper() if isinstance(level, str) else level)
    handler = next((h for h in root.handlers if h.get_name() == _HANDLER_NAME), None)
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler.set_name(_HANDLER_NAME)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
    install_log_redaction()
    return handler
