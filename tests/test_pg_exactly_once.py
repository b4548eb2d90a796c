"""Exactly once across processes on one PostgreSQL database (tests/exactly_once.py has the run).

Two `replay -` processes, 200 message ids each written to both, the second copy 0-100 ms after
the first: one reply group per id, one committed turn per id, every outbox row printed once;
for two processes of one account and of two accounts. Then a process killed while it holds
claimed replies: the other sends them after the lease, once, and not before.
"""
import os
import time

import psycopg
import pytest

from exactly_once import Collected, Replay, baseline, normalise, steps, stress
from pg_support import PG_MISSING_REASON, postgres_server  # noqa: F401 (fixture)

pytestmark = pytest.mark.skipif(PG_MISSING_REASON is not None, reason=PG_MISSING_REASON or "")
SEED = int(os.environ.get("EXACTLY_ONCE_SEED", "20261205"))


@pytest.fixture(scope="module")
def expected(tmp_path_factory, media):
    return baseline(tmp_path_factory.mktemp("exactly-once"), media)


@pytest.mark.parametrize("accounts", [("main", "main"), ("a", "b")], ids=["same-account", "two-accounts"])
def test_every_message_id_is_answered_once_by_one_process(postgres_server, tmp_path, media, expected, accounts):
    url = postgres_server.new_database()
    result = stress(url, tmp_path, media, expected, accounts, SEED)
    assert result.ids == 200
    assert result.duplicated_ids == [], f"seed {SEED}"
    assert result.wrong_ids == [], f"seed {SEED}"
    assert result.turns["processed"] == 200 and result.turns["messages"] == 200  # one committed turn per id
    assert result.printed == result.outbox_rows and result.unsent_rows == 0  # every row printed once
    last_state = expected[-1][-1][1]
    assert result.final_states == {last_state: 20}  # each conversation advanced once per id
    assert result.overlapping > 0  # some second copies arrived while the first was still in flight


def test_a_killed_claimer_s_replies_go_out_after_the_lease_once(postgres_server, tmp_path, media, expected):
    url = postgres_server.new_database()
    lease = 3.0
    got = Collected()
    victim_step = 5
    mid = f"k-{victim_step}"
    a = Replay("a", "main", url, tmp_path / "a", got.out, crash_at=f"claimed@{mid}", lease=lease)
    b = Replay("b", "main", url, tmp_path / "b", got.out, lease=lease)
    try:
        for i, step in enumerate(steps(media)[:victim_step]):
            ([a, b][i % 2]).send({"id": f"k-{i}", "from": "creator", **step})
            got.wait_for({f"k-{i}"})
        a.send({"id": mid, "from": "creator", **steps(media)[victim_step]})
        assert a.p.wait(timeout=60) == -9  # SIGKILL right after it claimed the turn's replies
        killed_at = time.monotonic()
        with psycopg.connect(url) as conn:
            held = conn.execute("SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL AND claimed_by LIKE 'main/%%'"
                                ).fetchone()[0]
        assert held == len(expected[victim_step])  # committed, claimed by the dead process, unsent
        got.settle(lease - 1.0)  # b polls every second, but the claim is still a live lease
        assert mid not in got.answered()
        got.wait_for({mid}, timeout=lease + 10)
        got.settle(1.5)
        lines = [(name, at, r) for name, at, r in got.lines if r["reply_to"] == mid]
        assert {name for name, _, _ in lines} == {"b"}
        assert [(normalise(r["text"]), r["state"]) for _, _, r in lines] == expected[victim_step]  # once
        assert min(at for _, at, _ in lines) - killed_at >= lease - 1.0
        for i, step in enumerate(steps(media)[victim_step + 1:], start=victim_step + 1):  # b goes on alone
            b.send({"id": f"k-{i}", "from": "creator", **step})
            got.wait_for({f"k-{i}"})
        got.settle(1.5)
    finally:
        assert b.close() == 0
        a.p.kill()
    per_id: dict[str, list] = {}
    for _, _, r in got.lines:
        per_id.setdefault(r["reply_to"], []).append((normalise(r["text"]), r["state"]))
    assert [per_id[f"k-{i}"] for i in range(len(expected))] == expected
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL").fetchone()[0] == 0
