"""The appeal funnel on PostgreSQL with two bot processes (two WeChat accounts on one database): the
scripted conversations of funnel_script.py fed to two real replay processes, each message to one of
them at random and some to both under the same id at the same moment; the status changes from this
process (as the send queue and the IMAP poll commit them) and from two `appeals status` commands run
at once. `python -m bot stats --json` then gives exactly the numbers of the script, as one SQLite
process does (tests/test_funnel.py)."""
import json
import os
import random
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest

from funnel_script import STATUSES, check_report, events
from pg_support import PG_MISSING_REASON, postgres_server  # noqa: F401 (fixture)
from test_pg_two_processes import KEY, ROOT, cli, pair

pytestmark = pytest.mark.skipif(PG_MISSING_REASON is not None, reason=PG_MISSING_REASON or "")


def test_two_processes_count_the_funnel_exactly(postgres_server, tmp_path, media):
    url = postgres_server.new_database()
    seed = int(os.environ.get("FUNNEL_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    evs = events(media)
    two = pair(url, tmp_path)
    redelivered = 0
    try:
        for event in evs:
            first = rng.choice("ab")
            two.procs[first].send(event)
            if rng.random() < 0.3:  # the other account gets the same message id at the same moment
                two.procs["b" if first == "a" else "a"].send(event)
                redelivered += 1
            two.wait_for(event["id"])
        two.settle(1.5)
    finally:
        codes = [p.close() for p in two.procs.values()]
    assert codes == [0, 0] and redelivered, f"seed {seed}"
    appeals = {r["to"]: r["appeal_id"] for _, r in two.replies if r.get("appeal_id")}
    assert set(appeals) == {"u1", "u6"}, f"seed {seed}"
    assert len({r["reply_to"] for _, r in two.replies if r.get("reply_to")}) == len(evs)

    from bot.appeals.crypto import Vault
    from bot.store import Writes, open_url

    store = open_url(url, Vault(KEY), account="test")
    at = datetime(2026, 11, 25, tzinfo=timezone.utc)
    operator = []
    try:
        for n, (user, status, by) in enumerate(STATUSES):
            if by == "op":
                operator.append((appeals[user], status))
                continue
            w = Writes()  # as bot/appeals/sender.py and imap.py commit them
            w.set_status(appeals[user], status, at + timedelta(minutes=n), by, None)
            store.commit_turn(None, None, at + timedelta(minutes=n), w, [])
    finally:
        store.close()
    env = dict(os.environ, BOT_APPEAL_KEY=KEY, BOT_DATABASE_URL=url, PYTHONPATH=str(ROOT))
    for appeal_id, status in dict.fromkeys(operator):  # each operator status by two commands at once
        procs = [subprocess.Popen([sys.executable, "-m", "bot", "appeals", "status", appeal_id, status,
                                   "--data-dir", str(tmp_path / "cli")], env=env, cwd=ROOT,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
        assert [p.wait(timeout=120) for p in procs] == [0, 0], [p.stderr.read() for p in procs]

    p = cli("stats", "--json", url=url, data=tmp_path / "cli")
    assert p.returncode == 0, p.stderr
    check_report(json.loads(p.stdout), evs)
    import psycopg

    with psycopg.connect(url) as conn:  # each (attempt, step, item) once, whichever process wrote it
        assert conn.execute("SELECT COUNT(*) FROM funnel").fetchone()[0] == conn.execute(
            "SELECT COUNT(*) FROM (SELECT DISTINCT attempt, step, slot FROM funnel) d").fetchone()[0]
        assert conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] == 10
