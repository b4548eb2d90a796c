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
import re
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


class Processes:
    """Replay processes whose replies are collected together."""

    def __init__(self):
        self.out: queue.Queue = queue.Queue()
        self.procs: dict[str, Process] = {}
        self.replies: list[tuple[str, dict]] = []

    def start(self, name: str, url: str, data: Path, crash_at: str = "") -> Process:
        self.procs[name] = Process(name, url, data, self.out, crash_at)
        return self.procs[name]

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


def pair(url: str, tmp: Path, crash_a: str = "") -> Processes:
    group = Processes()
    group.start("a", url, tmp / "a", crash_a)
    group.start("b", url, tmp / "b")
    return group


def cli(*args: str, url: str = "", key: str = KEY, data: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, BOT_APPEAL_KEY=key, BOT_DATABASE_URL=url, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "bot", *args, *(["--data-dir", str(data)] if data else [])],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)


def _export(url: str, data: Path, appeal_id: str, out: Path) -> Path:
    proc = cli("appeals", "export", appeal_id, "--out", str(out), url=url, data=data)
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
    two = pair(url, tmp_path)
    events = script(media)
    redelivered = []
    try:
        for event in events:
            first = rng.choice("ab")
            two.procs[first].send(event)
            if rng.random() < 0.4:  # the other account gets the same message id at the same moment
                two.procs["b" if first == "a" else "a"].send(event)
                redelivered.append(event["id"])
            two.wait_for(event["id"])
        two.settle(2.5)  # the live poll (1 s) would print anything left over
    finally:
        codes = [p.close() for p in two.procs.values()]
    assert codes == [0, 0]
    assert redelivered, f"seed {seed}: nothing was redelivered"
    got = by_message([r for _, r in two.replies])
    assert got == baseline, f"seed {seed}"  # every reply once per message id, as with one process
    _check_package(url, tmp_path, two.replies, media)


def test_a_process_killed_mid_turn_leaves_nothing_and_the_other_finishes(postgres_server, tmp_path, media,
                                                                        baseline):
    url = postgres_server.new_database()
    events = script(media)
    photo = events[7]  # the ID card's front: written into the turn's transaction, then SIGKILL
    assert photo.get("image")
    two = pair(url, tmp_path, crash_a=f"file_saved@{photo['id']}")
    rng = random.Random(7)
    try:
        for event in events[:7]:
            two.procs[rng.choice("ab")].send(event)
            two.wait_for(event["id"])
        two.procs["a"].send(photo)
        assert two.procs["a"].p.wait(timeout=60) == -9  # killed in the middle of the turn
        two.settle(0.5)
        assert not [r for _, r in two.replies if r.get("reply_to") == photo["id"]]
        import psycopg

        with psycopg.connect(url) as conn:  # nothing of the dead turn is in the database
            assert conn.execute("SELECT COUNT(*) FROM processed WHERE message_id = %s",
                                (photo["id"],)).fetchone()[0] == 0
            assert conn.execute("SELECT COUNT(*) FROM blobs WHERE key LIKE 'files/%%'").fetchone()[0] == 1
        for event in events[7:]:  # the same id again, then the rest: all on the other process
            two.procs["b"].send(event)
            two.wait_for(event["id"])
        two.settle(1.5)
    finally:
        assert two.procs["b"].close() == 0
        two.procs["a"].p.kill()
    got = by_message([r for _, r in two.replies])
    assert got == baseline
    _check_package(url, tmp_path, two.replies, media)


def test_an_sqlite_deployment_moves_to_postgresql_mid_appeal(postgres_server, tmp_path, media, baseline):
    """`db copy` of a data dir with a half-collected appeal (photos among it); the same account then
    finishes the appeal on PostgreSQL, and nothing was decrypted on the way."""
    events = script(media)
    data = tmp_path / "sqlite-data"
    one = Processes()
    one.start("main", "", data)
    for event in events[:9]:  # up to the ID card's back: three photos in working files
        one.procs["main"].send(event)
        one.wait_for(event["id"])
    assert one.procs["main"].close() == 0
    source = f"sqlite:///{data}/bot.sqlite3"
    url = postgres_server.new_database()

    wrong = cli("db", "copy", "--from", source, "--to", url, key="ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=",
                data=tmp_path / "x")
    assert wrong.returncode == 2 and "key" in wrong.stderr
    copied = cli("db", "copy", "--from", source, "--to", url, data=tmp_path / "x")
    assert copied.returncode == 0, copied.stderr
    assert "conversations 1" in copied.stdout and "files 3" in copied.stdout
    assert re.search(r"funnel [1-9]", copied.stdout)  # the funnel's steps so far (remedy, offer, items ...)
    again = cli("db", "copy", "--from", source, "--to", url, data=tmp_path / "x")
    assert again.returncode == 2 and "not empty" in again.stderr

    import psycopg

    with psycopg.connect(url) as conn:  # the working files arrived as they were: still encrypted
        tokens = [bytes(r[0]) for r in conn.execute(
            "SELECT data FROM blob_chunks WHERE key LIKE 'files/%%' ORDER BY key, n")]
    on_disk = sorted((data / "files").rglob("*.enc"))
    assert len(on_disk) == 3 and sorted(tokens) == sorted(p.read_bytes() for p in on_disk)
    assert all(t.startswith(b"gAAAAA") for t in tokens)  # Fernet tokens

    one.start("main-pg", url, tmp_path / "pg-data")  # BOT_ACCOUNT differs: the rows are the old account's
    for event in events[9:]:
        one.procs["main-pg"].send(event)
        one.wait_for(event["id"])
    one.settle(1.5)
    assert one.procs["main-pg"].close() == 0
    got = by_message([r for _, r in one.replies])
    assert got == baseline
    _check_package(url, tmp_path, [(n, r) for n, r in one.replies if n == "main-pg"], media)
    stats = cli("stats", "--json", url=url, data=tmp_path / "x")  # one attempt, begun on SQLite, confirmed here
    counts = {s["step"]: s["count"] for s in json.loads(stats.stdout)["funnel"]}
    assert (counts["remedy"], counts["accepted"], counts["route_email"], counts["confirmed"]) == (1, 1, 1, 1)
