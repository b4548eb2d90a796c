"""Whole-pipeline throughput: messages per second through the engine with SQLite, one core.

1,000 simulated users: most paste a failure prompt and get the remedy (matching); a share of them
go on to an appeal (route, text items, photo) — mixed matching and collection, interleaved.

    .venv/bin/python bench/pipeline_bench.py [--users 1000]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from bot.engine import Engine  # noqa: E402
from bot.messages import Attachment, Incoming  # noqa: E402
from bot.settings import load_settings  # noqa: E402

PROMPTS = ["人脸与公安网照片不一致,请确保是账户本人操作", "验证不通过,请重新认证", "认证信息已超过入驻上限",
           "扫了码说是未知客户端", "姓名与身份证号不匹配", "实名认证的二维码生成不出来", "求互关", "在吗"]


def script_for(user: str, rng: random.Random, photo: Path) -> list[dict]:
    steps = [{"text": rng.choice(PROMPTS)}]
    if rng.random() < 0.3:  # an appeal, partly collected
        steps = [{"text": "验证不通过,请重新认证"}, {"text": "是"}, {"text": "没有"}, {"text": "小鱼号"},
                 {"text": "张三"}, {"text": "11010519491231002X"}, {"image": photo}, {"text": "进度"}]
    return steps


async def run_interleaved(engine, scripts: dict[str, list[dict]]) -> list[float]:
    """Step k of every user, then step k+1 ...; each step's messages handled concurrently.
    Returns the per-message latencies in seconds."""
    latencies: list[float] = []
    for step in range(max(len(s) for s in scripts.values())):
        batch = []
        for user, steps in scripts.items():
            if step < len(steps):
                e = steps[step]
                att = Attachment(e["image"], "image") if "image" in e else None
                batch.append(Incoming(message_id=f"{user}-{step}", chat=user, sender=user,
                                      text=e.get("text", ""), attachment=att))

        async def one(msg):
            t = time.perf_counter()
            await engine.handle(msg)
            latencies.append(time.perf_counter() - t)

        await asyncio.gather(*(one(m) for m in batch))
    return latencies


async def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=1000)
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    from media import make_jpeg

    with tempfile.TemporaryDirectory() as tmp:
        photo = make_jpeg(Path(tmp) / "id.jpg")
        settings = load_settings(data_dir=Path(tmp) / "data", env={
            "BOT_KEY_FILE": str(Path(tmp) / "key"), "BOT_OCR_ENABLED": "false"})
        engine = await Engine.open(settings)
        rng = random.Random(1)
        scripts = {f"user{i}": script_for(f"user{i}", rng, photo) for i in range(args.users)}
        total = sum(len(s) for s in scripts.values())
        start = time.perf_counter()
        latencies = await run_interleaved(engine, scripts)
        elapsed = time.perf_counter() - start
        await engine.close()
    latencies.sort()
    print(f"{args.users} users, {total} messages in {elapsed:.2f} s on one core: "
          f"{total / elapsed:.0f} messages/s; per message p50 {latencies[len(latencies) // 2] * 1e3:.2f} ms, "
          f"p99 {latencies[int(len(latencies) * 0.99)] * 1e3:.2f} ms (SQLite, encrypted state)")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
