"""Validation of appeal items.

Every validator returns a `Validation`. On failure `error` is a short, kind Chinese sentence
that says what was wrong and how to fix it; the dialog shows it and asks again.
Validators never raise on bad user input.
"""
from __future__ import annotations

import functools
import re
import unicodedata
import warnings
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import filetype
from stdnum.cn import ric

__all__ = [
    "Validation",
    "validate_id_number",
    "validate_real_name",
    "validate_account_name",
    "validate_phone_model",
    "validate_taobao_version",
    "validate_contact",
    "validate_image",
    "validate_video",
    "mask_id_number",
    "find_id_numbers",
    "DEFAULT_MAX_IMAGE_PIXELS",
    "DEFAULT_MIN_IMAGE_SIDE",
    "DEFAULT_MAX_VIDEO_BYTES",
]


@dataclass(frozen=True)
class Validation:
    ok: bool
    value: str | None
    error: str | None
    # Optional extras (defaults keep `Validation(ok, value, error)` working):
    kind: str | None = None  # contact: "phone"|"email"|"wechat"; media: "image"|"video"
    duration_seconds: float | None = None  # video, when the container knows it
    width: int | None = None
    height: int | None = None


def _ok(value: str, **extra) -> Validation:
    return Validation(True, value, None, **extra)


def _fail(error: str) -> Validation:
    return Validation(False, None, error)


# ---------------------------------------------------------------- ID number (GB 11643)

# Separators people type inside an ID number (after NFKC, full-width forms are ASCII).
_ID_SEPARATORS = re.compile(r"[\s\-_.·]+")


def _compact_id(text: str) -> str:
    return _ID_SEPARATORS.sub("", unicodedata.normalize("NFKC", text or "")).upper()


def _id_birth_date(number: str) -> date | None:
    try:
        return ric.get_birth_date(number)
    except Exception:  # stdnum raises InvalidComponent (and int() may raise ValueError)
        return None


def validate_id_number(text: str, *, today: date | None = None) -> Validation:
    """18-digit mainland resident ID number; value is the compact upper-case form.

    Only length, format, birth date and checksum are checked. The region code is not
    looked up (stdnum's region table can lag behind newly created districts and we must
    not reject a genuine number).
    """
    number = _compact_id(text)
    if not number:
        return _fail("请发送18位身份证号码。")
    if len(number) != 18:
        return _fail(f"身份证号码应为18位，你发送的是{len(number)}位，请核对后重新发送。")
    if not number[:17].isascii() or not number[:17].isdigit() or number[17] not in "0123456789X":
        return _fail("身份证号码应为17位数字加最后一位数字或字母X，请核对后重新发送。")
    today = today or date.today()
    birth = _id_birth_date(number)
    if birth is None or birth.year < 1900 or birth > today:
        return _fail("身份证号码中的出生日期（第7到14位）不正确，请核对后重新发送。")
    if ric.calc_check_digit(number) != number[17]:
        return _fail("身份证号码校验未通过，可能有数字输错了，请对照身份证逐位核对后重新发送。")
    return _ok(number)


def mask_id_number(s: str) -> str:
    """`110101********123X`: first 6, 8 stars, last 4 (short input is starred entirely)."""
    number = _compact_id(s)
    if len(number) < 10:
        return "*" * len(number)
    return f"{number[:6]}{'*' * 8}{number[-4:]}"


_D = "0-9\uff10-\uff19"  # ASCII and full-width digits
_SEP = r"[ \t\-\u3000\uff0d]"
# Lookahead so overlapping candidates are all seen: "订单 123 1101..." must not hide an ID.
_ID_CANDIDATE = re.compile(
    rf"(?<![{_D}])(?=([{_D}](?:{_SEP}?[{_D}]){{16}}{_SEP}?[{_D}Xx\uff38\uff58])(?![{_D}Xx]))"
)


def find_id_numbers(text: str) -> list[str]:
    """Substrings of `text` that are checksum-valid ID numbers (separators tolerated).

    Cached: the engine and the dialog ask about the same (length-capped) message."""
    return list(_find_id_numbers(text or ""))


@functools.lru_cache(maxsize=256)
def _find_id_numbers(text: str) -> tuple[str, ...]:
    found: list[str] = []
    taken_until = -1
    for m in _ID_CANDIDATE.finditer(text or ""):
        start, candidate = m.start(1), m.group(1)
        if start < taken_until:
            continue
        if validate_id_number(candidate).ok:
            found.append(candidate)
            taken_until = start + len(candidate)
    return tuple(found)


# ---------------------------------------------------------------- names

# CJK Unified Ideographs incl. extensions A-I, compatibility ideographs and 〇.
_CJK_RANGES = (
    "\u3007"
    "\u3400-\u4dbf"
    "\u4e00-\u9fff"
    "\uf900-\ufaff"
    "\U00020000-\U0002a6df"
    "\U0002a700-\U0002ebef"
    "\U0002ebf0-\U0002ee5f"
    "\U0002f800-\U0002fa1f"
    "\U00030000-\U0003134f"
    "\U00031350-\U000323af"
)
_CJK_CHAR = re.compile(f"[{_CJK_RANGES}]")
_NAME_RE = re.compile(f"^[{_CJK_RANGES}]+(?:·[{_CJK_RANGES}]+)*$")
# Dots people use in minority names (维吾尔族, 藏族 …), all meaning the middle dot.
_NAME_DOTS = str.maketrans({c: "·" for c in "•．.・･‧∙⋅\u2027\u30fb\uff65"})


def validate_real_name(text: str) -> Validation:
    """A Chinese name as on the ID card: 2-20 CJK characters, `·` between name parts."""
    # No NFKC here: it could change a rare character the user typed on purpose.
    name = re.sub(r"\s+", "", (text or "").translate(_NAME_DOTS))
    if not name:
        return _fail("请发送身份证上的姓名。")
    if any(c.isdigit() or c.isascii() and c.isalpha() for c in unicodedata.normalize("NFKC", name)):
        return _fail("姓名里不能有数字或字母，请按身份证上的中文姓名发送。")
    if not (2 <= len(name) <= 20):
        return _fail("姓名应为2到20个字，请按身份证上的姓名发送。")
    if not _NAME_RE.match(name):
        return _fail("姓名只能包含汉字，少数民族姓名中间可以用“·”分隔，请按身份证上的姓名发送。")
    return _ok(name)


def validate_account_name(text: str) -> Validation:
    """大鱼号名称: 1-30 characters on a single line."""
    name = (text or "").strip()
    if not name:
        return _fail("请发送你的大鱼号名称。")
    if any(c in name for c in "\r\n\u2028\u2029") or any(unicodedata.category(c) == "Cc" for c in name):
        return _fail("大鱼号名称请写在一行里发送。")
    if len(name) > 30:
        return _fail("大鱼号名称最多30个字，请核对后重新发送。")
    return _ok(name)


def validate_phone_model(text: str) -> Validation:
    """e.g. "iPhone 13", "华为 Mate 60 Pro", "小米14"."""
    model = re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text or "")).strip()
    if not model:
        return _fail("请发送你的手机型号，例如“iPhone 13”或“华为 Mate 60 Pro”。")
    if not (2 <= len(model) <= 40):
        return _fail("手机型号应为2到40个字，例如“iPhone 13”或“小米14”，请重新发送。")
    if not any(c.isascii() and c.isalnum() for c in model) and not _CJK_CHAR.search(model):
        return _fail("没有看出手机型号，请发送类似“iPhone 13”或“华为 Mate 60 Pro”的型号。")
    return _ok(model)


_VERSION_RE = re.compile(r"^(?:淘宝)?(?:APP)?(?:版本号?)?[:：]?\s*[vV]?\s*(\d{1,4}(?:\.\d{1,6}){1,3})$", re.I)


def validate_taobao_version(text: str) -> Validation:
    """Like `10.38.0`, `10.38` or `V10.38.0`; value is digits and dots."""
    raw = unicodedata.normalize("NFKC", text or "").strip().replace("。", ".")
    m = _VERSION_RE.match(re.sub(r"\s+", "", raw))
    if not m:
        return _fail("请发送淘宝的版本号，例如“10.38.0”（在淘宝“设置-关于淘宝”里可以看到）。")
    return _ok(m.group(1))


# ---------------------------------------------------------------- contact

_MOBILE_RE = re.compile(r"^(?:\+?86)?(1[3-9]\d{9})$")
_EMAIL_RE = re.compile(
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$"
)
_WECHAT_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{5,19}$")


def validate_contact(text: str) -> Validation:
    """Mainland mobile, email or WeChat id; `kind` says which, `value` is normalised."""
    raw = unicodedata.normalize("NFKC", text or "").strip()
    if not raw:
        return _fail("请发送联系方式：手机号、邮箱或微信号都可以。")
    phone = re.sub(r"[\s\-()]", "", raw)
    if m := _MOBILE_RE.match(phone):
        return _ok(m.group(1), kind="phone")
    if "@" in raw:
        email = raw.replace(" ", "")
        if len(email) <= 254 and _EMAIL_RE.match(email):
            local, domain = email.rsplit("@", 1)
            return _ok(f"{local}@{domain.lower()}", kind="email")
        return _fail("邮箱格式好像不对，请核对后重新发送，例如 name@example.com。")
    if _WECHAT_RE.match(raw):
        return _ok(raw, kind="wechat")
    if phone.lstrip("+").isdigit():
        return _fail("手机号应为11位、以1开头的大陆手机号，请核对后重新发送。")
    return _fail("请发送有效的联系方式：11位手机号、邮箱，或微信号（6-20位，以字母开头）。")


# ---------------------------------------------------------------- media

DEFAULT_MIN_IMAGE_SIDE = 200
DEFAULT_MAX_IMAGE_PIXELS = 60_000_000
DEFAULT_MAX_VIDEO_BYTES = 50 * 1024 * 1024

# Pillow format -> value; the JPEG plugin reports many phone-camera JPEGs as MPO.
_IMAGE_FORMATS = {"JPEG": "jpeg", "MPO": "jpeg", "PNG": "png", "WEBP": "webp"}


def validate_image(
    path: str | Path,
    *,
    min_side: int = DEFAULT_MIN_IMAGE_SIDE,
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    max_bytes: int | None = None,
) -> Validation:
    """A real JPEG/PNG/WebP image, judged by decoding it, never by the file name."""
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    try:
        size = p.stat().st_size
    except OSError:
        return _fail("没有收到图片文件，请重新发送照片。")
    if size == 0:
        return _fail("图片是空的，请重新拍照或截图后发送。")
    if max_bytes is not None and size > max_bytes:
        return _fail(f"图片太大了（超过{max_bytes // (1024 * 1024)}MB），请压缩或截图后重新发送。")
    kind = filetype.guess(str(p))
    if kind is not None and kind.mime in ("image/heic", "image/heif", "image/avif"):
        return _fail("暂不支持HEIC格式的照片，请在相机设置里选择“兼容性最佳”，或截图后以JPG发送。")
    try:
        with warnings.catch_warnings():
            # Our own pixel cap below is stricter than Pillow's bomb warning threshold.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(p, formats=("JPEG", "PNG", "WEBP")) as im:
                fmt = _IMAGE_FORMATS.get(im.format or "")
                width, height = im.size
                if fmt is None:
                    return _fail("请发送JPG、PNG或WebP格式的照片。")
                if width * height > max_pixels:
                    return _fail("图片尺寸过大，请截图或压缩后重新发送。")
                if min(width, height) < min_side:
                    return _fail(f"图片太小了（至少需要{min_side}×{min_side}像素），请发送清晰的原图。")
                im.load()  # full decode: catches truncated/corrupt files
    except Image.DecompressionBombError:
        return _fail("图片尺寸过大，请截图或压缩后重新发送。")
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return _fail("这个文件不是可以打开的图片，请重新拍照或截图后发送（JPG或PNG）。")
    return _ok(fmt, kind="image", width=width, height=height)


# filetype extension -> value, for containers we accept.
_VIDEO_TYPES = {"mp4", "mov", "m4v", "3gp", "mkv", "webm", "avi", "flv", "mpg", "wmv"}


def validate_video(path: str | Path, *, max_bytes: int = DEFAULT_MAX_VIDEO_BYTES) -> Validation:
    """A real video: sniffed with `filetype`, opened with PyAV, one video frame decoded.

    `value` is a short container name (e.g. "mp4"); `duration_seconds` when known.
    """
    import av

    p = Path(path)
    try:
        size = p.stat().st_size
    except OSError:
        return _fail("没有收到视频文件，请重新发送录制的视频。")
    if size == 0:
        return _fail("视频是空的，请重新录制后发送。")
    if size > max_bytes:
        mb = max_bytes / (1024 * 1024)
        return _fail(f"视频太大了（超过{mb:g}MB），请缩短录制时间或降低清晰度后重新发送。")
    kind = filetype.guess(str(p))
    if kind is None:
        return _fail("这个文件不是视频，请录制实名认证失败的过程后发送视频。")
    if kind.mime.startswith("image/"):
        return _fail("你发送的是图片，这一项需要录制的视频，请录制实名认证失败的过程后发送。")
    if kind.mime.startswith("audio/"):
        return _fail("这个文件只有声音没有画面，请录制带画面的视频后发送。")
    if not kind.mime.startswith("video/") or kind.extension not in _VIDEO_TYPES:
        return _fail("这个文件不是视频，请录制实名认证失败的过程后发送视频。")
    try:
        with av.open(str(p), mode="r") as container:
            if not container.streams.video:
                return _fail("这个文件只有声音没有画面，请录制带画面的视频后发送。")
            stream = container.streams.video[0]
            # One pass over the packets: decode the first frame, and count packets so a
            # file cut short after a front `moov` index (fast-start MP4) is caught too.
            frame = None
            packets = 0
            for packet in container.demux(stream):
                if packet.size == 0:  # flush packet at EOF
                    continue
                packets += 1
                if frame is None:
                    frame = next(iter(packet.decode()), None)
            if frame is None:
                for frame in stream.codec_context.decode(None):  # frames held by the decoder
                    break
            if frame is None:
                raise ValueError("no decodable frame")
            if stream.frames and packets < stream.frames:
                raise ValueError("truncated")
            duration = _duration(container, stream)
            width, height = frame.width, frame.height
    except (av.FFmpegError, OSError, ValueError, StopIteration, RuntimeError):
        return _fail("视频文件无法打开，可能没有发送完整或已损坏，请重新发送。")
    return _ok(kind.extension, kind="video", duration_seconds=duration, width=width, height=height)


def _duration(container, stream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return round(float(stream.duration * stream.time_base), 3)
    if container.duration is not None:  # in AV_TIME_BASE (microseconds)
        return round(container.duration / 1_000_000, 3)
    return None
