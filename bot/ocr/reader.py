"""Read the text of a screenshot, offline, with RapidOCR (PP-OCR models on onnxruntime).

Design (see docs/ocr.md):

* Lazy: nothing heavy is imported until the first ``read``; ``ocr_available()`` only
  asks importlib whether the packages are installed.
* Offline: the engine is built with explicit paths to the default PP-OCR models that
  ship inside the rapidocr wheel, and rapidocr's downloader is replaced by one that
  refuses, so a missing model is an ``OcrUnavailable``, never a network request. The
  visualisation helper (which downloads a font) is never called.
* One engine per process, shared by every ``ScreenshotReader``; inference runs on a
  single worker thread (calls are serialised, the event loop never blocks).
* Bounded input: file size, pixel count (read from the header before decoding),
  wall time (``asyncio.wait_for``). Corrupt or non-image files raise ``OcrError``.
"""
from __future__ import annotations

import asyncio
import importlib.util
import logging
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: Packages the extra needs; both must be installed (rapidocr 3.x does not pull in
#: onnxruntime by itself).
REQUIRED_MODULES = ("rapidocr", "onnxruntime")

#: Detector input is capped at this many pixels on the longest side.
DET_LIMIT_SIDE_LEN = 960

#: Formats a chat screenshot or phone photo comes in; anything else is refused
#: before any decoder runs.
ALLOWED_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")  # JPEG covers MPO


class OcrUnavailable(Exception):
    """The OCR extra (rapidocr + onnxruntime, or its bundled models) is not installed."""


class OcrError(Exception):
    """This image could not be read: too big, corrupt, not an image, or OCR timed out."""


@dataclass(frozen=True)
class OcrResult:
    text: str  # lines joined with "\n", in reading order
    lines: list[str] = field(default_factory=list)
    seconds: float = 0.0  # wall time of decode + OCR (excludes queueing)


def ocr_available() -> bool:
    """True when rapidocr and onnxruntime are importable. Imports neither."""
    try:
        return all(importlib.util.find_spec(m) is not None for m in REQUIRED_MODULES)
    except (ImportError, ValueError):
        return False


# --------------------------------------------------------------------------- engine

_ENGINE: Any = None
_ENGINE_MODELS: dict[str, Path] = {}
_ENGINE_LOCK = threading.Lock()  # guards creation and every call of the engine
_EXECUTOR: ThreadPoolExecutor | None = None
_EXECUTOR_LOCK = threading.Lock()


def _executor() -> ThreadPoolExecutor:
    global _EXECUTOR
    with _EXECUTOR_LOCK:
        if _EXECUTOR is None:
            _EXECUTOR = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ocr")
        return _EXECUTOR


def _refuse_download(cls, input_params) -> None:  # replaces DownloadFile.run
    raise OcrUnavailable(
        f"rapidocr tried to download {getattr(input_params, 'file_url', '?')}; "
        "this bot only uses the models shipped in the rapidocr wheel")


def _default_model_paths() -> dict[str, Path]:
    """Paths of rapidocr's default det/cls/rec models inside the installed wheel."""
    import rapidocr
    from rapidocr.inference_engine.base import FileInfo, InferSession
    from rapidocr.utils.parse_parameters import ParseParams

    pkg = Path(rapidocr.__file__).resolve().parent
    cfg = ParseParams.load(pkg / "config.yaml")
    paths: dict[str, Path] = {}
    for section in ("Det", "Cls", "Rec"):
        c = cfg[section]
        info = InferSession.get_model_url(FileInfo(
            engine_type=c.engine_type, ocr_version=c.ocr_version, task_type=c.task_type,
            lang_type=c.lang_type, model_type=c.model_type))
        path = pkg / "models" / Path(str(info["model_dir"])).name
        if not path.is_file():
            raise OcrUnavailable(f"rapidocr's bundled {section} model is missing: {path}")
        paths[section] = path
    return paths


def _build_engine() -> tuple[Any, dict[str, Path]]:
    try:
        import onnxruntime  # noqa: F401  (fail early with a clear message)
        from rapidocr import RapidOCR
        from rapidocr.utils import download_file
    except ImportError as exc:
        raise OcrUnavailable(
            f"OCR extra not installed ({exc}); install rapidocr and onnxruntime") from exc
    # Never touch the network: any download attempt becomes an OcrUnavailable.
    download_file.DownloadFile.run = classmethod(_refuse_download)
    models = _default_model_paths()
    params = {
        "Global.log_level": "error",  # "text detection result is empty" is not news
        "Det.limit_type": "max",
        "Det.limit_side_len": DET_LIMIT_SIDE_LEN,
        "Det.model_path": str(models["Det"]),
        "Cls.model_path": str(models["Cls"]),
        "Rec.model_path": str(models["Rec"]),
    }
    engine = RapidOCR(params=params)
    # rapidocr loads each model on first use; load all three now so that the first
    # read's cost is paid once, here, and a broken model fails loudly at start.
    for loader in ("_load_det_model", "_load_cls_model", "_load_rec_model"):
        getattr(engine, loader, lambda: None)()
    return engine, models


def _engine() -> Any:
    """The process-wide engine; call with _ENGINE_LOCK held."""
    global _ENGINE, _ENGINE_MODELS
    if _ENGINE is None:
        t0 = time.perf_counter()
        _ENGINE, _ENGINE_MODELS = _build_engine()
        log.info("OCR engine ready in %.2f s (models: %s)", time.perf_counter() - t0,
                 ", ".join(p.name for p in _ENGINE_MODELS.values()))
    return _ENGINE


def loaded_model_paths() -> dict[str, Path]:
    """Model files the engine was built from ({} before the first read)."""
    return dict(_ENGINE_MODELS)


# --------------------------------------------------------------------------- input

def _open_checked(path: Path, max_pixels: int, max_bytes: int):
    """Open ``path`` with Pillow after the size and header checks; nothing decoded yet."""
    from PIL import Image

    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise OcrError(f"image not found: {path.name}") from None
    except OSError as exc:
        raise OcrError(f"cannot read image {path.name}: {exc}") from None
    if not path.is_file():
        raise OcrError(f"not a file: {path.name}")
    if size == 0:
        raise OcrError(f"image file is empty: {path.name}")
    if size > max_bytes:
        raise OcrError(f"image file too large: {size} bytes (limit {max_bytes})")
    try:
        img = Image.open(path, formats=ALLOWED_FORMATS)  # reads the header only
    except Image.DecompressionBombError as exc:
        raise OcrError(f"image too large to decode: {exc}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise OcrError(f"not a readable image ({', '.join(ALLOWED_FORMATS)}): "
                       f"{path.name}") from exc
    width, height = img.size
    if width <= 0 or height <= 0:
        img.close()
        raise OcrError(f"image has no pixels: {path.name}")
    if width * height > max_pixels:
        img.close()
        raise OcrError(f"image too large: {width}x{height} = {width * height} pixels "
                       f"(limit {max_pixels})")
    return img


def _decode_bgr(path: Path, max_pixels: int, max_bytes: int):
    """Decode to a contiguous BGR uint8 array (OpenCV order, what rapidocr expects)."""
    import numpy as np
    from PIL import Image, ImageOps

    img = _open_checked(path, max_pixels, max_bytes)
    try:
        with img:
            img.seek(0)  # first frame of a GIF/WebP animation
            img = ImageOps.exif_transpose(img)  # phone photos carry an orientation
            if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
                rgba = img.convert("RGBA")
                rgb = Image.new("RGB", rgba.size, (255, 255, 255))
                rgb.paste(rgba, mask=rgba.getchannel("A"))
            else:
                rgb = img.convert("RGB")
    except Image.DecompressionBombError as exc:
        raise OcrError(f"image too large to decode: {exc}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise OcrError(f"corrupt image {path.name}: {exc}") from exc
    return np.ascontiguousarray(np.asarray(rgb)[:, :, ::-1])


# --------------------------------------------------------------------------- output

def _skew(boxes) -> float:
    """Median slope angle (radians) of the wide boxes' top edges; 0 if none is reliable."""
    angles = []
    for box in boxes:
        (x0, y0), (x1, y1) = (float(box[0][0]), float(box[0][1])), (float(box[1][0]), float(box[1][1]))
        height = math.hypot(float(box[3][0]) - x0, float(box[3][1]) - y0)
        width = math.hypot(x1 - x0, y1 - y0)
        if width > 2 * height > 0:
            angles.append(math.atan2(y1 - y0, x1 - x0))
    if not angles:
        return 0.0
    angle = sorted(angles)[len(angles) // 2]
    return angle if abs(angle) < math.radians(30) else 0.0


def _reading_order(boxes, txts) -> list[str]:
    """Group boxes into visual lines (vertical overlap), top to bottom, left to right.

    Segments without a letter or digit are dropped. Coordinates are first rotated by the page's skew (a photo of a screen is rarely
    level), so the two ends of one tilted line still land on the same line.
    """
    boxes = [[(float(p[0]), float(p[1])) for p in box] for box in boxes]
    a = _skew(boxes)
    cos_a, sin_a = math.cos(a), math.sin(a)
    items = []
    for box, txt in zip(boxes, txts):
        txt = str(txt).strip()
        if not any(ch.isalnum() for ch in txt):
            continue  # "_" or "-" read off a card edge or a divider is not text
        xs = [x * cos_a + y * sin_a for x, y in box]
        ys = [-x * sin_a + y * cos_a for x, y in box]
        items.append((min(ys), max(ys), min(xs), txt))
    items.sort(key=lambda it: (it[0] + it[1]) / 2)
    lines: list[list[tuple[float, float, float, str]]] = []
    for it in items:
        cy, h = (it[0] + it[1]) / 2, it[1] - it[0]
        if lines:
            cur = lines[-1]
            top = sum(i[0] for i in cur) / len(cur)
            bottom = sum(i[1] for i in cur) / len(cur)
            if abs(cy - (top + bottom) / 2) <= 0.5 * min(h, bottom - top):
                cur.append(it)
                continue
        lines.append([it])
    return [" ".join(i[3] for i in sorted(line, key=lambda i: i[2])) for line in lines]


# --------------------------------------------------------------------------- reader

class ScreenshotReader:
    """Async front end: ``await ScreenshotReader().read(path)`` -> ``OcrResult``."""

    def __init__(self, max_pixels: int = 40_000_000, max_bytes: int = 20 * 1024 * 1024,
                 timeout: float = 20.0):
        if max_pixels <= 0 or max_bytes <= 0 or timeout <= 0:
            raise ValueError("max_pixels, max_bytes and timeout must be positive")
        self.max_pixels = int(max_pixels)
        self.max_bytes = int(max_bytes)
        self.timeout = float(timeout)

    @classmethod
    def from_settings(cls, settings) -> "ScreenshotReader":
        """Build from bot.settings.Settings (ocr_max_pixels, ocr_timeout_seconds)."""
        max_bytes = min(20 * 1024 * 1024, int(settings.max_attachment_mb * 1024 * 1024))
        return cls(max_pixels=settings.ocr_max_pixels, max_bytes=max_bytes,
                   timeout=settings.ocr_timeout_seconds)

    async def read(self, path: Path) -> OcrResult:
        """OCR one image file. Raises OcrUnavailable (extra missing) or OcrError."""
        if not ocr_available():
            raise OcrUnavailable("OCR extra not installed: pip install rapidocr onnxruntime")
        path = Path(path)
        # Cheap checks (size, header) off the OCR worker, so a bad file is refused at
        # once even while another image is being read, and without loading the engine.
        await asyncio.to_thread(self._precheck, path)
        loop = asyncio.get_running_loop()
        fut = loop.run_in_executor(_executor(), self._read_sync, path)
        try:
            return await asyncio.wait_for(fut, self.timeout)
        except asyncio.TimeoutError:
            # The worker cannot be interrupted inside onnxruntime; it finishes this
            # image in the background and the next read queues behind it.
            raise OcrError(f"OCR timed out after {self.timeout:g} s") from None

    async def warm_up(self) -> None:
        """Import and load the models now (e.g. at bot start) instead of on first read."""
        if not ocr_available():
            raise OcrUnavailable("OCR extra not installed: pip install rapidocr onnxruntime")
        loop = asyncio.get_running_loop()
        await asyncio.wait_for(loop.run_in_executor(_executor(), self._warm_sync),
                               max(self.timeout, 60.0))

    def _precheck(self, path: Path) -> None:
        _open_checked(path, self.max_pixels, self.max_bytes).close()

    @staticmethod
    def _warm_sync() -> None:
        with _ENGINE_LOCK:
            _engine()

    def _read_sync(self, path: Path) -> OcrResult:
        t0 = time.perf_counter()
        img = _decode_bgr(path, self.max_pixels, self.max_bytes)
        with _ENGINE_LOCK:
            engine = _engine()
            try:
                out = engine(img)
            except OcrUnavailable:
                raise
            except Exception as exc:  # onnxruntime / OpenCV failure on this input
                raise OcrError(f"OCR failed on {path.name}: {exc}") from exc
        boxes = getattr(out, "boxes", None)
        txts = getattr(out, "txts", None)
        lines = _reading_order(boxes, txts) if boxes is not None and txts else []
        return OcrResult(text="\n".join(lines), lines=lines,
                         seconds=time.perf_counter() - t0)
