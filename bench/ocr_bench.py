"""Benchmark bot.ocr on rendered failure-page screenshots.

    .venv/bin/python bench/ocr_bench.py [--reads 10] [--threads N]

Prints, per screenshot variant: cold latency (only for the first read of the run:
lazy import + model load + OCR), warm p50/p95 over --reads reads, accuracy (share of
prompts whose text is found, similarity >= 0.9 after removing punctuation), and the
process's peak RSS before and after OCR. Needs the OCR extra and a CJK font
(apt-get install fonts-wqy-microhei). Run it in a fresh process: cold means cold.
"""
from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import sys
import tempfile
import time
import unicodedata
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from bot.ocr import ScreenshotReader, ocr_available  # noqa: E402
from screenshots import FONT_HINT, VARIANTS, find_cjk_font, render_failure_screenshot  # noqa: E402
from screenshots import SAMPLE_PROMPTS as PROMPTS  # noqa: E402



def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def normalise(text: str) -> str:
    return "".join(c for c in text if unicodedata.category(c)[0] not in "PSZC")


def similarity(prompt: str, text: str) -> float:
    from rapidfuzz import fuzz
    p, t = normalise(prompt), normalise(text)
    return 1.0 if p in t else fuzz.partial_ratio(p, t) / 100.0


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    k = (len(values) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reads", type=int, default=10, help="warm reads per variant")
    args = ap.parse_args()
    if not ocr_available():
        print("OCR extra not installed: pip install rapidocr onnxruntime", file=sys.stderr)
        return 2
    if find_cjk_font() is None:
        print(f"no CJK font; {FONT_HINT}", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory(prefix="ocr-bench-") as tmp:
        shots = {v: [render_failure_screenshot(p, Path(tmp) / f"{v}-{i}.png", v,
                                               app="taobao" if i % 2 else "dayu")
                     for i, p in enumerate(PROMPTS)] for v in VARIANTS}
        rss_before = peak_rss_mib()
        reader = ScreenshotReader(timeout=120)

        t0 = time.perf_counter()
        first = await reader.read(shots["clean"][0])
        cold = time.perf_counter() - t0
        rss_loaded = peak_rss_mib()

        rows = []
        for variant in VARIANTS:
            times, hits, sims = [], 0, []
            for prompt, shot in zip(PROMPTS, shots[variant]):
                s = similarity(prompt, (await reader.read(shot)).text)
                sims.append(s)
                hits += s >= 0.9
            for n in range(args.reads):
                shot = shots[variant][n % len(PROMPTS)]
                t = time.perf_counter()
                await reader.read(shot)
                times.append(time.perf_counter() - t)
            rows.append((variant, hits, min(sims), statistics.median(times),
                         pct(times, 0.95)))

    print(f"cold first read (import + model load + OCR, 1080x1920 PNG): {cold:.2f} s"
          f" (first OcrResult.seconds {first.seconds:.2f} s)")
    print(f"{'variant':<9} {'accuracy':>9} {'min sim':>8} {'warm p50':>9} {'warm p95':>9}")
    for variant, hits, min_sim, p50, p95 in rows:
        print(f"{variant:<9} {hits:>4}/{len(PROMPTS):<4} {min_sim:>8.2f} "
              f"{p50 * 1000:>7.0f}ms {p95 * 1000:>7.0f}ms")
    print(f"peak RSS: {rss_before:.0f} MiB before OCR, {rss_loaded:.0f} MiB after the "
          f"first read, {peak_rss_mib():.0f} MiB at the end ({args.reads} warm reads "
          f"per variant)")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
