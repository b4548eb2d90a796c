"""Offline OCR of screenshots (optional extra: rapidocr + onnxruntime).

Importing this package is cheap: rapidocr, onnxruntime, numpy and OpenCV are
imported on the first ``ScreenshotReader.read``. See docs/ocr.md.
"""
from .reader import (
    OcrError,
    OcrResult,
    OcrUnavailable,
    ScreenshotReader,
    ocr_available,
)

__all__ = ["OcrError", "OcrResult", "OcrUnavailable", "ScreenshotReader", "ocr_available"]
