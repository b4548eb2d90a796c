"""Render realistic phone screenshots of a real-name verification failure page.

Used by tests/test_ocr.py and bench/ocr_bench.py, and reusable by the matcher's
replay tests: ``render_failure_screenshot(prompt, tmp_path / "shot.png", "jpeg30")``.

The pictures imitate what a creator sends: a 1080x1920 portrait screenshot with a
status bar ("14:32  4G 87%"), a navigation bar titled 实名认证, a red failure icon,
the prompt text wrapped over several lines, and the two buttons 重新认证 / 我知道了.
Degraded variants imitate what WeChat and the creator's phone do to it.

Text needs a CJK font: Debian's ``fonts-wqy-microhei``
(``apt-get install fonts-wqy-microhei``). ``find_cjk_font()`` returns None when no
usable font is found, so callers can skip with a clear message.
"""
from __future__ import annotations

import os
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter, ImageFont

WIDTH, HEIGHT = 1080, 1920

#: Variants accepted by ``render_failure_screenshot``.
# Prompts of the seed with short, long, quoted and punctuated text: what the OCR tests render.
SAMPLE_PROMPTS = [
    "人脸与公安网照片不一致,请确保是账户本人操作",
    "认证信息已超过入驻上限",
    "扫描二维码后提示“未知客户端”",
    "姓名与身份证号不匹配,请重新确认并再次认证",
    "身份证照片信息与需认证的身份证号码不一致,或身份证照片无法识别。请按提示重新提交有效身份证照片",
]
VARIANTS = ("clean", "small", "jpeg30", "blur", "rotated")

FONT_HINT = "install a CJK font: apt-get install fonts-wqy-microhei"

_CANDIDATE_FONTS = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
)

# Two app looks: 大鱼号 (blue accent) and Taobao (orange accent).
_THEMES = {
    "dayu": {"accent": (24, 119, 242), "bg": (245, 246, 248), "card": (255, 255, 255)},
    "taobao": {"accent": (255, 80, 0), "bg": (242, 242, 242), "card": (255, 255, 255)},
}


def find_cjk_font() -> Path | None:
    """Path of a CJK-capable TrueType font, or None. ``OCR_TEST_FONT`` overrides."""
    override = os.environ.get("OCR_TEST_FONT")
    for candidate in ((override,) if override else ()) + _CANDIDATE_FONTS:
        path = Path(candidate)
        if path.is_file():
            try:
                font = ImageFont.truetype(str(path), 40)
            except OSError:
                continue
            # A font without CJK glyphs renders 实 as a tofu box as wide as "□".
            if font.getlength("实名认证") > 100:
                return path
    return None


def _font(size: int) -> ImageFont.FreeTypeFont:
    path = find_cjk_font()
    if path is None:
        raise RuntimeError(f"no CJK font found; {FONT_HINT}")
    return ImageFont.truetype(str(path), size)


def wrap_text(text: str, font: ImageFont.FreeTypeFont, max_width: int) -> list[str]:
    """Wrap CJK text character by character; closing punctuation never starts a line."""
    no_start = set(",.;:!?，。；：！？、）」”’")
    lines: list[str] = []
    line = ""
    for ch in text:
        if line and font.getlength(line + ch) > max_width and ch not in no_start:
            lines.append(line)
            line = ch
        else:
            line += ch
    if line:
        lines.append(line)
    return lines


def _status_bar(draw: ImageDraw.ImageDraw, fg=(20, 20, 20)) -> None:
    small = _font(34)
    draw.text((48, 22), "14:32", font=small, fill=fg)
    # Right side: signal bars, "4G", battery outline with 87 % fill and the percentage.
    x = WIDTH - 330
    for i in range(4):
        h = 10 + i * 7
        draw.rectangle((x + i * 12, 58 - h, x + i * 12 + 7, 58), fill=fg)
    draw.text((x + 56, 22), "4G", font=small, fill=fg)
    bx = WIDTH - 205
    draw.rounded_rectangle((bx, 28, bx + 56, 56), radius=6, outline=fg, width=3)
    draw.rectangle((bx + 5, 33, bx + 5 + int(46 * 0.87), 51), fill=fg)
    draw.rectangle((bx + 58, 37, bx + 62, 47), fill=fg)
    draw.text((bx + 74, 22), "87%", font=small, fill=fg)


def render_failure_screenshot(text: str, path: Path | str, variant: str = "clean",
                              app: str = "dayu") -> Path:
    """Draw the failure page showing ``text``, degrade it per ``variant``, save to ``path``.

    variant: clean | small (downscaled to 360 px wide) | jpeg30 (JPEG quality 30) |
    blur (Gaussian blur) | rotated (3.5 degrees, as a photo of a screen would be).
    The file format follows the variant (JPEG for jpeg30), not the suffix of ``path``.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; expected one of {VARIANTS}")
    theme = _THEMES[app]
    img = Image.new("RGB", (WIDTH, HEIGHT), theme["bg"])
    draw = ImageDraw.Draw(img)

    # Status bar and navigation bar.
    draw.rectangle((0, 0, WIDTH, 84), fill=(255, 255, 255))
    _status_bar(draw)
    draw.rectangle((0, 84, WIDTH, 212), fill=(255, 255, 255))
    draw.line((0, 212, WIDTH, 212), fill=(225, 225, 225), width=2)
    draw.line((60, 148, 84, 124), fill=(40, 40, 40), width=5)  # back chevron
    draw.line((60, 148, 84, 172), fill=(40, 40, 40), width=5)
    title_font = _font(52)
    tw = title_font.getlength("实名认证")
    draw.text(((WIDTH - tw) / 2, 118), "实名认证", font=title_font, fill=(17, 17, 17))

    # Card with the failure icon, heading and the prompt.
    card_top = 260
    body_font = _font(44)
    lines = wrap_text(text, body_font, WIDTH - 2 * 130)
    line_h = 70
    card_bottom = card_top + 420 + line_h * len(lines) + 60
    draw.rounded_rectangle((48, card_top, WIDTH - 48, card_bottom), radius=24,
                           fill=theme["card"])
    cx, cy, r = WIDTH // 2, card_top + 130, 72
    draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=(250, 81, 81))
    draw.line((cx - 30, cy - 30, cx + 30, cy + 30), fill="white", width=12)
    draw.line((cx - 30, cy + 30, cx + 30, cy - 30), fill="white", width=12)
    head_font = _font(56)
    head = "认证失败"
    draw.text(((WIDTH - head_font.getlength(head)) / 2, card_top + 240), head,
              font=head_font, fill=(17, 17, 17))
    y = card_top + 350
    for line in lines:
        draw.text((130, y), line, font=body_font, fill=(102, 102, 102))
        y += line_h

    # Buttons.
    btn_font = _font(46)
    by = card_bottom + 110
    draw.rounded_rectangle((90, by, WIDTH - 90, by + 120), radius=60, fill=theme["accent"])
    label = "重新认证"
    draw.text(((WIDTH - btn_font.getlength(label)) / 2, by + 32), label, font=btn_font,
              fill="white")
    by += 170
    draw.rounded_rectangle((90, by, WIDTH - 90, by + 120), radius=60, fill="white",
                           outline=(210, 210, 210), width=3)
    label = "我知道了"
    draw.text(((WIDTH - btn_font.getlength(label)) / 2, by + 32), label, font=btn_font,
              fill=(51, 51, 51))
    # Home indicator.
    draw.rounded_rectangle((WIDTH // 2 - 140, HEIGHT - 30, WIDTH // 2 + 140, HEIGHT - 20),
                           radius=5, fill=(30, 30, 30))

    path = Path(path)
    if variant == "small":
        img = img.resize((360, 640), Image.LANCZOS)
    elif variant == "blur":
        img = img.filter(ImageFilter.GaussianBlur(radius=2.0))
    elif variant == "rotated":
        img = img.rotate(3.5, resample=Image.BICUBIC, expand=True, fillcolor=(40, 40, 40))
    if variant == "jpeg30":
        img.save(path, format="JPEG", quality=30)
    else:
        img.save(path, format="PNG")
    return path


def render_blank_screenshot(path: Path | str) -> Path:
    """A 1080x1920 picture with no text: a sky gradient, a hill and an empty card.

    (No circles: OCR rightly reads a lone ring as the letter O.)
    """
    img = Image.new("RGB", (WIDTH, HEIGHT), (242, 242, 242))
    draw = ImageDraw.Draw(img)
    for y in range(0, HEIGHT, 4):
        shade = y * 60 // HEIGHT
        draw.rectangle((0, y, WIDTH, y + 3), fill=(150 + shade, 190 + shade // 2, 235))
    draw.polygon([(0, 1500), (300, 1250), (620, 1420), (1080, 1180), (1080, 1920), (0, 1920)],
                 fill=(96, 150, 80))
    draw.rounded_rectangle((90, 300, WIDTH - 90, 700), radius=30, fill=(255, 255, 255))
    path = Path(path)
    img.save(path, format="PNG")
    return path
