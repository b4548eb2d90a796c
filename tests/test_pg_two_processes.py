"""Two bot processes (two WeChat accounts) on one PostgreSQL database, as in a shared deployment.

One creator's whole email-route appeal is fed to two real `python -m bot replay -` processes, each
message to one of them at random, some redelivered to the other under the same id at the same
moment (the race the advisory lock and the processed id settle). Every message id gets its
replies once (`reply_to`), as in a single SQLite process; there is one package, with every item
intact, exportable from either side. Then one process is killed with SIGKILL in the middle of a
turn (after a photo was written in the turn's transaction) and the other finishes the appeal.
"""
import json
import os
import queue
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pg_support import PG_MISSING_REASON, postgres_server  # noqa: F401 (fixture)
from test_crash_recovery import KEY, _sha, baseline, by_message, script  # noqa: F401 (fixture)

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(PG_MISSING_REASON is not None, reason=PG_MISSING_REASON or "")


class Process:
    """A replay process on the shared database; its JSON lines go to a queue shared by both."""

    def __init__(self, name: str, url: str, data: Path, out: queue.Queue, crash_at: str = ""):
        self.name = name
        env = dict(os.environ, BOT_APPEAL_KEY=KEY, BOT_LOG_LEVEL="WARNING", BOT_OCR_ENABLED="false",
                   BOT_APPEAL_EMAIL="appeals@example.invalid", BOT_DATABASE_URL=url, BOT_ACCOUNT=name,
                   CRASH_AT=crash_at, PYTHONPATH=str(ROOT))
        self.p = subprocess.Popen([sys.executable, str(ROOT / "tests" / "crashing_replay.py"),
                                   "--data-dir", str(data)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
        threading.Thread(target=self._read, args=(out,), daemon=True).start()

    def _read(self, out: queue.Queue):
        for line in self.p.stdout:
            if line.startswith("{"):
                out.put((self.name, json.loads(line)))

    def send(self, event: dict) -> None:
        self.p.stdin.write(json.dumps(event, ensure_ascii=False) + "\n")
        self.p.stdin.flush()

    def close(self) -> int:
        self.p.stdin.close()
        return self.p.wait(timeout=60)


class Pair:
    def __init__(self, url: str, tmp: Path, crash_a: str = ""):
        self.out: queue.Queue = queue.Queue()
        self.procs = {"a": Process("a", url, tmp / "a", self.out, crash_a),
                      "b": Process("b", url, tmp / "b", self.out)}
        self.replies: list[tuple[str, dict]] = []

    def wait_for(self, message_id: str, timeout: float = 60) -> None:
        """Until `message_id` was answered by either process (and its other lines printed)."""
        deadline = time.monotonic() + timeout
        while not any(r.get("reply_to") == message_id for _, r in self.replies):
            try:
                self.replies.append(self.out.get(timeout=max(0.01, deadline - time.monotonic())))
            except queue.Empty:
                raise AssertionError(f"no reply to {message_id} within {timeout} s") from None
        self.settle(0.4)

    def settle(self, seconds: float) -> None:
        """Collect what arrives within `seconds` (a duplicate would show up here)."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            try:
                self.replies.append(self.out.get(timeout=left))
            except queue.Empty:
                break


def _export(url: str, data: Path, appeal_id: str, out: Path) -> Path:
    env = dict(os.environ, BOT_APPEAL_KEY=KEY, BOT_DATABASE_URL=url, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", "bot", "appeals", "export", appeal_id, "--out", str(out),
                           "--data-dir", str(data)], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out


def _check_package(url, tmp_path, replies, media):
    appeal_ids = {r["appeal_id"] for _, r in replies if r.get("appeal_id")}
    assert len(appeal_ids) == 1
    appeal_id = appeal_ids.pop()
    import psycopg

    with psycopg.connect(url) as conn:
        folders = conn.execute("SELECT DISTINCT split_part(key, '/', 2) FROM blobs "
                               "WHERE key LIKE 'appeals/%%'").fetchall()
        working = conn.execute("SELECT COUNT(*) FROM blobs WHERE key LIKE 'files/%%'").fetchone()[0]
        conversations = conn.execute("SELECT COUNT(*) FROM conversations").fetchone()[0]
    assert folders == [(appeal_id,)]  # one package
    assert conversations == 0
    assert working == 0  # the working copies went with the finished collection
    for side in ("a", "b"):  # either side's settings export the same package
        out = _export(url, tmp_path / side, appeal_id, tmp_path / f"export-{side}")
        record = json.loads((out / "appeal.json").read_text(encoding="utf-8"))
        assert record["slots"]["account_name"] == "小鱼的美食日记"
        assert record["slots"]["id_number"] == "11010519491231002X"
        for slot, key in (("id_handheld_photo", "handheld"), ("id_front_photo", "front"),
                          ("id_back_photo", "back"), ("taobao_screenshot", "screenshot"), ("failure_video", "video")):
            files = list(out.glob(slot + ".*"))
            assert len(files) == 1 and _sha(files[0].read_bytes()) == _sha(media[key].read_bytes()), (side, slot)
        assert (out / "email.eml").read_bytes().startswith(b"Subject:") or b"Subject:" in (out / "email.eml").read_bytes()


def test_one_appeal_across_two_processes(postgres_server, tmp_path, media, baseline):
    url = postgres_server.new_database()
    seed = int(os.environ.get("TWO_PROCESS_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    pair = Pair(url, tmp_path)
    events = script(media)
    redelivered = []
    try:
        for event in events:
            first = rng.choice("ab")
            pair.procs[first].send(event)
            if rng.random() < 0.4:  # the other account gets the same message id at the same moment
                pair.procs["b" if first == "a" else "a"].send(event)
                redelivered.append(event["id"])
            pair.wait_for(event["id"])
        pair.settle(2.5)  # the live poll (1 s) would print anything left over
    finally:
        codes = [p.close() for p in pair.procs.values()]
    assert codes == [0, 0]
    assert redelivered, f"seed {seed}: nothing was redelivered"
    got = by_message([r for _, r in pair.replies])
    assert got == baseline, f"seed {seed}"  # every reply once per message id, as with one process
    _check_package(url, tmp_path, pair.replies, media)


def test_a_process_killed_mid_turn_leaves_nothing_and_the_other_finishes(postgres_server, tmp_path, media,
                                                                        baseline):
    url = postgres_server.new_database()
    events = script(media)
    photo = events[7]  # the ID card's front: written into the turn's transaction, then SIGKILL
    assert photo.get("image")
    pair = Pair(url, tmp_path, crash_a=f"file_saved@{photo['id']}")
    rng = random.Random(7)
    try:
        for event in events[:7]:
            pair.procs[rng.choice("ab")].send(event)
            pair.wait_for(event["id"])
        pair.procs["a"].send(photo)
        assert pair.procs["a"].p.wait(timeout=60) == -9  # killed in the middle of the turn
        pair.settle(0.5)
        assert not [r for _, r in pair.replies if r.get("reply_to") == photo["id"]]
        import psycopg

        with psycopg.connect(url) as conn:  # nothing of the dead turn is in the database
            assert conn.execute("SELECT COUNT(*) FROM processed WHERE message_id = %s",
                                (photo["id"],)).fetchone()[0] == 0
            assert conn.execute("SELECT COUNT(*) FROM blobs WHERE key LIKE 'files/%%'").fetchone()[0] == 1
        for event in events[7:]:  # the same id again, then the rest: all on the other process
            pair.procs["b"].send(event)
            pair.wait_for(event["id"])
        pair.settle(1.5)
    finally:
        assert pair.procs["b"].close() == 0
        pair.procs["a"].p.kill()
    got = by_message([r for _, r in pair.replies])
    assert got == baseline
    _check_package(url, tmp_path, pair.replies, media)
