"""Two WeChat accounts on one shared store, end to end: two real gateways (one per account, each
with its own token), two real bot processes (`python -m bot run`, BOT_ACCOUNT a and b) on one
PostgreSQL database. One creator walks a whole email-route appeal writing to either account in
turn; each message is answered by the account it was sent to, never by the other, and an operator's
status change reaches the creator through the account the appeal was made with.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pg_support import PG_MISSING_REASON, postgres_server  # noqa: F401 (fixture)

from .test_wechat_e2e import PROMPT, REMEDY, answer_for, dm, media, media_msg, texts  # noqa: F401 (fixture)

ROOT = Path(__file__).resolve().parents[2]
KEY = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(PG_MISSING_REASON is not None, reason=PG_MISSING_REASON or "")]


def test_one_appeal_across_two_accounts(start_gateway, start_bot, e2e_tmp, postgres_server, media):
    url = postgres_server.new_database()
    gateways, bots = {}, {}
    for account in ("a", "b"):
        gw = start_gateway(token=f"e2e-token-{account}")  # each account its own gateway and token
        since = gw.mark()
        bots[account] = start_bot(e2e_tmp / f"shared-{account}", gw.endpoint, token=gw.token,
                                  extra_env={"BOT_DATABASE_URL": url, "BOT_ACCOUNT": account, "BOT_APPEAL_KEY": KEY})
        bots[account].wait_connected(gw, since)
        bots[account].wait_log("logged in as")  # the gateway logged in at its start; told on connect
        gateways[account] = gw
    a, b = gateways["a"], gateways["b"]
    alice = a.user("alice")
    assert b.user("alice") == alice  # a WeChat id is the same whichever account one writes to

    def only_on(gw, other, since_other):
        """`gw` answered (dm/media_msg waited for it); `other` said nothing meanwhile."""
        assert other.said(alice, since_other) == [], "the other account answered too"

    mark_b = b.mark()
    replies = dm(a, "alice", PROMPT)
    assert REMEDY in texts(replies)
    only_on(a, b, mark_b)
    mark_a = a.mark()
    replies = dm(b, "alice", "是")  # the same conversation, continued through the other account
    assert "线上反馈" in replies[-1]["text"], texts(replies)
    only_on(b, a, mark_a)
    replies = dm(a, "alice", "没有")

    turn = 0
    for _ in range(30):
        question = replies[-1]["text"]
        if "AP-" in texts(replies):
            break
        kind, answer = answer_for(question, media)
        gw, other = (b, a) if turn % 2 == 0 else (a, b)
        turn += 1
        mark_other = other.mark()
        replies = dm(gw, "alice", answer) if kind == "dm" else media_msg(gw, "alice", answer)
        only_on(gw, other, mark_other)
    else:
        raise AssertionError("the appeal did not finish")
    appeal_id = re.search(r"AP-\d{8}-[0-9A-Z]{6}", texts(replies)).group(0)
    made_with, other = (a, b) if turn % 2 == 0 else (b, a)

    # An operator's status, from the CLI in a third process on the same database: the creator is
    # told once, through the account the appeal was made with.
    since_made, since_other = made_with.mark(), other.mark()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BOT_", "WECHATY_"))}
    env.update(BOT_DATABASE_URL=url, BOT_APPEAL_KEY=KEY, BOT_ACCOUNT="operator")
    cli = subprocess.run([sys.executable, "-m", "bot", "appeals", "status", appeal_id, "reviewing", "--note",
                          "材料已收到", "--data-dir", str(e2e_tmp / "shared-cli")],
                         capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
    assert cli.returncode == 0, cli.stderr
    told = made_with.wait(lambda e: e["event"] == "bot_said" and "材料已收到" in (e.get("text") or ""),
                          timeout=20, since=since_made)
    assert told["to"] == alice and appeal_id in told["text"]
    made_with.collect(alice, since_made, quiet=2.5)  # longer than the outbox poll: no second copy
    assert len([e for e in made_with.said(alice, since_made) if "材料已收到" in (e.get("text") or "")]) == 1
    assert other.said(alice, since_other) == []
    for bot in bots.values():
        assert bot.stop() == 0
