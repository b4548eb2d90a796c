"""Exactly once across processes, over several seeds: two `replay -` processes on one PostgreSQL
database, 200 message ids (20 creators x 10 steps of an email-route appeal, photos among them),
each id written to both processes, the second copy 0-100 ms after the first. The run of
tests/test_pg_exactly_once.py (tests/exactly_once.py), with 5 seeds and both configurations
(two processes of one account; two accounts sharing the conversations).

    .venv/bin/python bench/exactly_once_bench.py [--seeds 1,2,3,4,5]

It starts a throwaway PostgreSQL server (Debian's binaries, tests/pg_support.py) and prints, per
run: ids answered twice, ids answered otherwise than one process answers, committed turns,
outbox rows vs printed lines, second copies that arrived while the first was in flight, time.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from exactly_once import baseline, stress  # noqa: E402
from media import make_jpeg, make_png  # noqa: E402
from pg_support import start_postgres  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="1,2,3,4,5")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    failures = 0
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        media = {"handheld": make_jpeg(tmp / "handheld.jpg", seed=11), "front": make_png(tmp / "front.png", seed=12),
                 "back": make_jpeg(tmp / "back.jpg", seed=13)}
        expected = baseline(tmp, media)
        server = start_postgres()
        try:
            print(f"{'accounts':<10} {'seed':>5} {'ids':>4} {'twice':>5} {'wrong':>5} {'turns':>5} "
                  f"{'rows':>5} {'printed':>7} {'overlap':>7} {'seconds':>7}")
            for label, accounts in (("one", ("main", "main")), ("two", ("a", "b"))):
                for seed in seeds:
                    url = server.new_database(f"once_{label}_{seed}")
                    r = stress(url, tmp / f"{label}{seed}", media, expected, accounts, seed)
                    bad = bool(r.duplicated_ids or r.wrong_ids or r.turns["messages"] != r.ids
                               or r.printed != r.outbox_rows or r.unsent_rows)
                    failures += bad
                    print(f"{label:<10} {seed:>5} {r.ids:>4} {len(r.duplicated_ids):>5} {len(r.wrong_ids):>5} "
                          f"{r.turns['messages']:>5} {r.outbox_rows:>5} {r.printed:>7} {r.overlapping:>7} "
                          f"{r.seconds:>7.1f}" + ("  FAILED " + ",".join(r.duplicated_ids + r.wrong_ids)[:80]
                                                  if bad else ""))
        finally:
            server.stop()
    print(f"{len(seeds) * 2 - failures} of {len(seeds) * 2} runs exactly once")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
