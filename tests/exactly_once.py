"""The exactly-once stress run shared by tests/test_pg_exactly_once.py and bench/exactly_once_bench.py.

Two real `python -m bot replay -` processes on one PostgreSQL database. Creators go through the
first steps of an email-route appeal (text items and photos), a round at a time; every message id
is written to both processes, the second copy 0-100 ms after the first (so often while the first
copy's turn is running, sometimes after it was answered), as a redelivery to another replica
would be. What must hold: one reply group per id, equal to a single process's; one committed turn
per id; every outbox row printed once.
"""
from __future__ import annotations

import json
import os
import queue
import random
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KEY = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
P2 = "人脸与公安网照片不一致,请确保是账户本人操作"


def steps(media: dict) -> list[dict]:
    """One creator's messages; each one moves the conversation on."""
    return [{"text": P2}, {"text": "是"}, {"text": "没有"}, {"text": "小鱼的美食日记"}, {"text": "欧阳娜娜"},
            {"text": "11010519491231002X"}, {"image": str(media["handheld"])}, {"image": str(media["front"])},
            {"image": str(media["back"])}, {"text": "iPhone 13"}]


def normalise(text: str) -> str:
    return re.sub(r"AP-\d{8}-[A-Z0-9]+", "AP-…", text)


class Replay:
    """A `replay -` process (tests/crashing_replay.py: CRASH_AT may end it at a named point);
    its reply lines go to a queue shared with the other process, with the time they arrived."""

    def __init__(self, name: str, account: str, url: str, data: Path, out: queue.Queue, crash_at: str = "",
                 lease: float | None = None):
        self.name = name
        env = dict(os.environ, BOT_APPEAL_KEY=KEY, BOT_LOG_LEVEL="WARNING", BOT_OCR_ENABLED="false",
                   BOT_APPEAL_EMAIL="appeals@example.invalid", BOT_DATABASE_URL=url, BOT_ACCOUNT=account,
                   CRASH_AT=crash_at, PYTHONPATH=str(ROOT))
        if lease is not None:
            env["BOT_OUTBOX_LEASE_SECONDS"] = str(lease)
        self.p = subprocess.Popen([sys.executable, str(ROOT / "tests" / "crashing_replay.py"),
                                   "--data-dir", str(data)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
        self._lock = threading.Lock()
        threading.Thread(target=self._read, args=(out,), daemon=True).start()

    def _read(self, out: queue.Queue) -> None:
        for line in self.p.stdout:
            if line.startswith("{"):
                out.put((self.name, time.monotonic(), json.loads(line)))

    def send(self, event: dict) -> None:
        with self._lock:
            try:
                self.p.stdin.write(json.dumps(event, ensure_ascii=False) + "\n")
                self.p.stdin.flush()
            except (BrokenPipeError, ValueError):  # a killed process
                pass

    def close(self) -> int:
        try:
            self.p.stdin.close()
        except BrokenPipeError:
            pass
        return self.p.wait(timeout=60)


@dataclass
class Collected:
    """Reply lines of both processes: (process, arrival time, line)."""
    out: queue.Queue = field(default_factory=queue.Queue)
    lines: list[tuple[str, float, dict]] = field(default_factory=list)

    def answered(self) -> set[str]:
        return {r.get("reply_to") for _, _, r in self.lines}

    def wait_for(self, ids: set[str], timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not ids <= self.answered():
            try:
                self.lines.append(self.out.get(timeout=max(0.01, deadline - time.monotonic())))
            except queue.Empty:
                raise AssertionError(f"no reply to {sorted(ids - self.answered())[:5]} within {timeout} s") from None

    def settle(self, seconds: float) -> None:
        """Collect what arrives within `seconds` (a duplicate would show up here)."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            try:
                self.lines.append(self.out.get(timeout=left))
            except queue.Empty:
                break


def baseline(tmp: Path, media: dict) -> list[list[tuple[str, str | None]]]:
    """One creator's steps through one process on SQLite: per step, its (text, state) lines."""
    env = dict(os.environ, BOT_APPEAL_KEY=KEY, BOT_LOG_LEVEL="WARNING", BOT_OCR_ENABLED="false",
               BOT_APPEAL_EMAIL="appeals@example.invalid", PYTHONPATH=str(ROOT))
    env.pop("BOT_DATABASE_URL", None)
    script = "\n".join(json.dumps({"id": f"s{i}", "from": "u", **s}, ensure_ascii=False)
                       for i, s in enumerate(steps(media)))
    proc = subprocess.run([sys.executable, "-m", "bot", "replay", "-", "--data-dir", str(tmp / "baseline")],
                          input=script, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got: dict[str, list] = {}
    for line in proc.stdout.splitlines():
        r = json.loads(line)
        got.setdefault(r["reply_to"], []).append((normalise(r["text"]), r["state"]))
    return [got[f"s{i}"] for i in range(len(steps(media)))]


@dataclass
class Outcome:
    ids: int
    duplicated_ids: list[str]  # answered by both processes, or twice
    wrong_ids: list[str]  # answered otherwise than a single process answers
    turns: Counter  # committed 'message' events per id... as counts in the database
    outbox_rows: int
    printed: int
    unsent_rows: int
    final_states: Counter
    seconds: float
    overlapping: int  # second copies sent before the first copy's replies were printed


def stress(url: str, tmp: Path, media: dict, expected: list, accounts: tuple[str, str], seed: int,
           creators: int = 20) -> Outcome:
    """Every creator's steps, one round at a time; each message id to both processes."""
    rng = random.Random(seed)
    got = Collected()
    procs = [Replay(n, acc, url, tmp / f"data-{n}", got.out) for n, acc in zip("ab", accounts)]
    n_steps = len(steps(media))
    t0 = time.monotonic()
    second_copy_at: dict[str, float] = {}
    try:
        for step_no, step in enumerate(steps(media)):
            plan = []  # (at, process, event)
            start = time.monotonic()
            for c in range(creators):
                event = {"id": f"c{c:02d}-{step_no}", "from": f"creator{c:02d}", **step}
                first = rng.randrange(2)
                a = start + rng.uniform(0, 0.05)
                b = a + rng.uniform(0, 0.1)
                plan += [(a, procs[first], event), (b, procs[1 - first], event)]
                second_copy_at[event["id"]] = b
            for at, proc, event in sorted(plan, key=lambda x: x[0]):
                time.sleep(max(0.0, at - time.monotonic()))
                proc.send(event)
            got.wait_for({f"c{c:02d}-{step_no}" for c in range(creators)})
        got.settle(2.5)  # the live poll (1 s) prints anything left over
    finally:
        codes = [p.close() for p in procs]
    seconds = time.monotonic() - t0
    assert codes == [0, 0], [p.p.stderr.read()[-2000:] for p in procs]

    groups: dict[str, list] = {}
    first_line_at: dict[str, float] = {}
    for name, at, r in got.lines:
        groups.setdefault(r["reply_to"], []).append((name, (normalise(r["text"]), r["state"])))
        first_line_at.setdefault(r["reply_to"], at)
    duplicated, wrong = [], []
    for mid, lines in groups.items():
        step_no = int(mid.rsplit("-", 1)[1])
        texts = [x for _, x in lines]
        if len({n for n, _ in lines}) > 1 or len(texts) > len(expected[step_no]):
            duplicated.append(mid)
        elif texts != expected[step_no]:
            wrong.append(mid)
    import psycopg

    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT COUNT(*), COUNT(sent_at) FROM outbox").fetchone()
        states = Counter(s for (s,) in conn.execute("SELECT state FROM conversations"))
        processed = conn.execute("SELECT COUNT(*) FROM processed").fetchone()[0]
        messages = conn.execute("SELECT COUNT(*) FROM events WHERE kind = 'message'").fetchone()[0]
    return Outcome(ids=creators * n_steps, duplicated_ids=sorted(duplicated), wrong_ids=sorted(wrong),
                   turns=Counter(processed=processed, messages=messages), outbox_rows=rows[0],
                   printed=len(got.lines), unsent_rows=rows[0] - rows[1], final_states=states, seconds=seconds,
                   overlapping=sum(1 for mid, b in second_copy_at.items() if b < first_line_at.get(mid, 0)))
