"""Throughput of the shared store: messages/s with 1, 2 and 4 bot processes on one PostgreSQL
database, against one process on SQLite, with `bench/pipeline_bench.py`'s mix (1,000 creators:
most paste a prompt, 30 % go on into an appeal with text items and a photo).

Each process is one account serving its share of the creators (a creator talks to one account),
through the whole engine: the turn's transaction and advisory lock, encrypted state, the photo
written as blob rows. The processes start together; messages/s = all messages / (last finish -
first start).

    .venv/bin/python bench/shared_store_bench.py [--users 1000] [--processes 1,2,4]
                                                 [--database-url postgresql://...]

Without --database-url it starts a throwaway PostgreSQL server (Debian's binaries, as the tests
do: tests/pg_support.py) and creates a fresh database per run.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from pipeline_bench import run_interleaved, script_for  # noqa: E402  (the same mix and loop)

KEY = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="


async def worker(args) -> int:
    """One bot process: its share of the users, interleaved step by step, like pipeline_bench."""
    from bot.engine import Engine
    from bot.settings import load_settings
    from media import make_jpeg

    tmp = Path(args.tmp)
    photo = tmp / "id.jpg"
    if not photo.exists():
        make_jpeg(photo)
    env = {"BOT_APPEAL_KEY": KEY, "BOT_OCR_ENABLED": "false", "BOT_ACCOUNT": f"acc{args.index}"}
    if args.database_url:
        env["BOT_DATABASE_URL"] = args.database_url
    settings = load_settings(data_dir=tmp / f"data{args.index}", env=env)
    engine = await Engine.open(settings)
    rng = random.Random(1)
    every = {f"user{i}": script_for(f"user{i}", rng, photo) for i in range(args.users)}
    mine = {u: s for i, (u, s) in enumerate(every.items()) if i % args.of == args.index}
    print("ready", flush=True)
    sys.stdin.readline()  # "go"
    start = time.time()
    latencies = await run_interleaved(engine, mine)
    end = time.time()
    await engine.close()
    print(json.dumps({"start": start, "end": end, "messages": len(latencies), "latencies": latencies}), flush=True)
    return 0


def run(n: int, users: int, database_url: str | None, tmp: Path) -> dict:
    tmp.mkdir(parents=True, exist_ok=True)
    procs = []
    for i in range(n):
        cmd = [sys.executable, __file__, "--worker", "--index", str(i), "--of", str(n), "--users", str(users),
               "--tmp", str(tmp)] + (["--database-url", database_url] if database_url else [])
        procs.append(subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
    for p in procs:
        assert p.stdout.readline().strip() == "ready"
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    results = [json.loads(p.stdout.readline()) for p in procs]
    for p in procs:
        p.wait()
    latencies = sorted(x for r in results for x in r["latencies"])
    total = sum(r["messages"] for r in results)
    elapsed = max(r["end"] for r in results) - min(r["start"] for r in results)
    return {"processes": n, "messages": total, "seconds": elapsed, "per_second": total / elapsed,
            "p50_ms": latencies[len(latencies) // 2] * 1e3, "p99_ms": latencies[int(len(latencies) * 0.99)] * 1e3}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=1000)
    ap.add_argument("--processes", default="1,2,4")
    ap.add_argument("--database-url", help="an existing PostgreSQL server's database (emptied per run: "
                                           "give a throwaway one); default: start one")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--index", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--of", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--tmp", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return asyncio.run(worker(args))

    rows = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        rows.append(("SQLite", run(1, args.users, None, tmp / "sqlite")))
        server = None
        if not args.database_url:
            from pg_support import start_postgres

            server = start_postgres()
        try:
            for n in [int(x) for x in args.processes.split(",")]:
                if server is not None:
                    url = server.new_database(f"bench_{n}")
                else:
                    url = args.database_url
                    _empty(url)
                rows.append(("PostgreSQL", run(n, args.users, url, tmp / f"pg{n}")))
        finally:
            if server is not None:
                server.stop()
    print(f"{args.users} users, {os.cpu_count()} cores, same mix as pipeline_bench.py")
    print(f"{'backend':<11} {'processes':>9} {'messages':>8} {'seconds':>8} {'msgs/s':>7} {'p50 ms':>7} {'p99 ms':>7}")
    for backend, r in rows:
        print(f"{backend:<11} {r['processes']:>9} {r['messages']:>8} {r['seconds']:>8.2f} {r['per_second']:>7.0f} "
              f"{r['p50_ms']:>7.2f} {r['p99_ms']:>7.2f}")
    return 0


def _empty(url: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")


if __name__ == "__main__":
    sys.exit(main())
