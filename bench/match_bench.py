"""Matcher benchmark: cold start, per-message latency on one core, accuracy; ours vs a plain
`rapidfuzz.process.extractOne` baseline, on the real knowledge base and a generated 5,000-entry one.

    .venv/bin/python bench/match_bench.py [--runs 5]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rapidfuzz import fuzz, process  # noqa: E402

from bot.kb import load_knowledge  # noqa: E402
from bot.matching import Matcher  # noqa: E402
from bot.matching.normalize import clean  # noqa: E402

__import__("jieba").setLogLevel(60)

DEV = ROOT.parent / "shared" / "eval" / "dev_match.jsonl"
HOLDOUT = ROOT / "tests" / "data" / "holdout_match.jsonl"
UNSEEN = ROOT / "bench" / "data" / "unseen_match.jsonl"  # written last, not used while building the matcher


class Baseline:
    """What one would write first: extractOne over the prompt texts, WRatio, fixed cut-offs."""

    def __init__(self, kb):
        self.choices = {p.id: clean(p.text) for p in kb.prompts}

    def match(self, text):
        best = process.extractOne(clean(text), self.choices, scorer=fuzz.WRatio)
        if best is None or best[1] < 60:
            return None, "none"
        return best[2], "confident" if best[1] >= 80 else "suggest"


def generated_kb(kb, size: int, seed: int = 7):
    """The real 18 prompts plus synthetic ones built from the domain's own words and clauses."""
    rng = random.Random(seed)
    words = sorted({w for p in kb.prompts for w in __import__("jieba").lcut(clean(p.text)) if len(w) > 1})
    filler = "的了在是有和就不人都一上也很到说要去你会着没看好自己这那里后以所然如家用发想作样进生能对"
    prompts = list(kb.prompts)
    groups = list(kb.groups)
    seen = {p.text for p in prompts}
    next_id = max(p.id for p in prompts) + 1
    while len(prompts) < size:
        parts = [rng.choice(words) + "".join(rng.choice(filler) for _ in range(rng.randint(0, 2)))
                 for _ in range(rng.randint(3, 7))]
        text = "".join(parts)
        if text in seen:
            continue
        seen.add(text)
        prompts.append(dataclasses.replace(kb.prompts[0], id=next_id, group=rng.choice(groups), text=text,
                                           phrasings=(), keywords=()))
        next_id += 1
    return dataclasses.replace(kb, prompts=tuple(prompts))


def latency(match, texts, runs):
    for t in texts:  # warm caches
        match(t)
    samples = []
    for _ in range(runs):
        for t in texts:
            start = time.perf_counter()
            match(t)
            samples.append(time.perf_counter() - start)
    samples.sort()
    return samples[len(samples) // 2] * 1e3, samples[min(len(samples) - 1, int(len(samples) * 0.99))] * 1e3


def accuracy(match, rows):
    """(top-1 accuracy at confident-or-suggest, negatives at confident, negatives,
    positives answered confident with a wrong prompt)."""
    pos = [r for r in rows if r["expect"]]
    neg = [r for r in rows if not r["expect"]]
    answers = [(r, match(r["text"])) for r in pos]
    ok = sum(1 for r, res in answers if res[1] != "none" and res[0] in r["expect"])
    wrong_conf = sum(1 for r, res in answers if res[1] == "confident" and res[0] not in r["expect"])
    neg_conf = sum(1 for r in neg if match(r["text"])[1] == "confident")
    return ok / len(pos), neg_conf, len(neg), wrong_conf


def cold_start(runs: int, knowledge: Path) -> float:
    code = ("import sys; sys.path.insert(0, %r)\n"
            "from bot.kb import load_knowledge\nfrom bot.matching import Matcher\n"
            "Matcher(load_knowledge(%r)).match('人脸与公安网照片不一致')\n") % (str(ROOT), str(knowledge))
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--size", type=int, default=5000)
    ap.add_argument("--knowledge", type=Path, default=ROOT / "knowledge", help="knowledge dir (default: this repo's)")
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    sets = {name: [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
            for name, path in (("dev", DEV), ("holdout", HOLDOUT), ("unseen", UNSEEN)) if path.exists()}
    texts = [r["text"] for rows in sets.values() for r in rows]
    kb = load_knowledge(args.knowledge)
    print(f"python {sys.version.split()[0]}, one core, {len(texts)} messages x {args.runs} runs")
    print(f"cold start (new process: import + load + jieba init + first match): {cold_start(3, args.knowledge):.2f} s")
    header = f"{'knowledge base':<18}{'matcher':<10}{'build s':>8}{'p50 ms':>9}{'p99 ms':>9}"
    header += "".join(f"{name + ' top-1':>14}{'neg conf':>10}{'pos wrong conf':>16}" for name in sets)
    print(header)
    for label, base in (("real (18)", kb), (f"generated ({args.size})", generated_kb(kb, args.size))):
        start = time.perf_counter()
        ours = Matcher(base)
        built = time.perf_counter() - start
        baseline = Baseline(base)

        def ours_match(t, m=ours):
            r = m.match(t)
            return r.id, r.tier

        for name, match, build in (("ours", ours_match, built), ("baseline", baseline.match, 0.0)):
            p50, p99 = latency(match, texts, args.runs)
            row = f"{label:<18}{name:<10}{build:>8.2f}{p50:>9.3f}{p99:>9.3f}"
            for rows in sets.values():
                acc, neg_conf, n_neg, wrong_conf = accuracy(match, rows)
                row += f"{acc:>14.1%}{f'{neg_conf}/{n_neg}':>10}{wrong_conf:>16}"
            print(row, flush=True)
        if base is kb:
            details = ours
    print("\nreal knowledge base, ours: per set")
    print(f"{'set':<10}{'positives':>10}{'correct':>9}{'confident':>10}{'wrong conf':>11}"
          f"{'negatives':>10}{'neg conf':>9}{'neg suggest':>12}{'neg vague':>10}")
    for name, rows in sets.items():
        pos = [details.match(r["text"]) for r in rows if r["expect"]]
        expects = [r["expect"] for r in rows if r["expect"]]
        neg = [details.match(r["text"]) for r in rows if not r["expect"]]
        correct = sum(1 for m, e in zip(pos, expects) if m.tier != "none" and m.id in e)
        confident = sum(1 for m, e in zip(pos, expects) if m.tier == "confident" and m.id in e)
        wrong = sum(1 for m, e in zip(pos, expects) if m.tier == "confident" and m.id not in e)
        print(f"{name:<10}{len(pos):>10}{correct:>9}{confident:>10}{wrong:>11}{len(neg):>10}"
              f"{sum(m.tier == 'confident' for m in neg):>9}{sum(m.tier == 'suggest' for m in neg):>12}"
              f"{sum(m.vague for m in neg):>10}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
