"""Two engines (two accounts, each with its own store connections, as two processes would have) on
one PostgreSQL database: periodic work fires once, replies leave through the right account, and a
reload on one reaches the other."""
import asyncio

import pytest

from driver import START, Driver, email_answers, run_appeal
from pg_support import PG_MISSING_REASON, postgres_server  # noqa: F401 (fixture)
from test_appeal_delivery import KEY, MAILBOX, at, smtp, smtp_env  # noqa: F401 (fixture)

pytestmark = pytest.mark.skipif(PG_MISSING_REASON is not None, reason=PG_MISSING_REASON or "")


@pytest.fixture
async def two(postgres_server, tmp_path):
    url = postgres_server.new_database()
    opened = []

    async def open_engine(account, **env):
        d = await Driver.open(tmp_path / account, BOT_DATABASE_URL=url, BOT_ACCOUNT=account, BOT_APPEAL_KEY=KEY,
                              **env)
        opened.append(d)
        return d

    yield open_engine
    for d in opened:
        await d.close()


def outbox_accounts(driver) -> list[tuple[str, str]]:
    return [tuple(r) for r in driver.engine.store._query("SELECT account, chat FROM outbox ORDER BY id")]


async def test_a_reminder_and_an_expiry_fire_once(two, media):
    a, b = await two("a"), await two("b")
    r = await a.say("人脸与公安网照片不一致,请确保是账户本人操作")
    r = await a.say("是")
    r = await a.say("没有")  # the email route: collecting
    assert r["awaiting"] == "account_name"
    await a.send(**{"from": "u1", "text": "小鱼的美食日记"})
    await b.send(**{"from": "u1", "text": "欧阳娜娜"})  # the creator writes to the other account too
    await b.send(**{"from": "u1", "image": str(media["handheld"])})
    before = len(outbox_accounts(a))
    # both processes tick at the same moment, past the reminder time
    ra, rb = await asyncio.gather(a.send(tick="2026-11-24T10:45:00+08:00"), b.send(tick="2026-11-24T10:45:00+08:00"))
    assert len(ra) + len(rb) == 1 and "还差" in (ra + rb)[0]["text"]
    # it goes out through the account the creator last wrote to
    assert outbox_accounts(a)[before:] == [("b", "u1")]
    ra, rb = await asyncio.gather(a.send(tick="2026-11-25T11:00:00+08:00"), b.send(tick="2026-11-25T11:00:00+08:00"))
    assert len(ra) + len(rb) == 1  # the expiry notice, once
    store = a.engine.store
    assert store._query("SELECT COUNT(*) FROM conversations")[0][0] == 0
    a.engine.janitor(min_age=__import__("datetime").timedelta(0))
    assert store._query("SELECT COUNT(*) FROM blobs")[0][0] == 0  # the photo went with the partial data


async def test_an_appeal_email_is_sent_once_by_one_of_two_processes(two, media, smtp):
    env = smtp_env(smtp)
    a, b = await two("a", **env), await two("b", **env)
    final, _ = await run_appeal(a, email_answers(media), "没有")
    appeal_id = final["appeal_id"]
    assert a.engine.store.appeal(appeal_id)["status"] == "queued"
    ra, rb = await asyncio.gather(a.send(tick=at(40)), b.send(tick=at(40)))
    assert len(smtp.box.received) == 1
    assert smtp.box.received[0][0] == [MAILBOX]
    notices = [r for r in ra + rb if r["chat"] == "u1"]
    assert len(notices) == 1 and appeal_id in notices[0]["text"]
    assert b.engine.store.appeal(appeal_id)["status"] == "sent"
    assert outbox_accounts(a)[-1] == ("a", "u1")  # told through the account the appeal was made with
    await asyncio.gather(a.send(tick=at(90)), b.send(tick=at(90)))
    assert len(smtp.box.received) == 1


async def test_a_reload_on_one_process_reaches_the_other(two):
    a, b = await two("a", BOT_ADMINS="boss"), await two("b")
    assert b.engine.snapshot.loaded_by == "start"
    r = await a.say("#reload", user="boss")
    assert "知识库已是最新版本" in r["text"]  # the files did not change; the others re-read them all the same
    await b.send(tick=START)
    assert b.engine.snapshot.loaded_by == "another process"
    loaded_at = b.engine.snapshot.loaded_at
    await b.send(tick=START)  # nothing new: no second reload
    assert b.engine.snapshot.loaded_at == loaded_at
    await a.send(tick=START)  # the process that announced it does not reload again
    assert a.engine.snapshot.loaded_by != "another process"


async def test_binary_chatter_with_nul_characters_is_answered(two):
    a = await two("a")
    r = await a.say("\x00\x00认证信息已超过入驻上限\x00")
    assert r["prompt_id"] is not None and "出了点问题" not in r["text"]
    r = await a.say("\x00求互关\x00啊啊\x00")  # unmatched: its text is counted for the operators
    assert "出了点问题" not in r["text"]
    assert a.engine.store.event_counts()["message"] == 2


async def test_a_conversation_that_cannot_be_read_gets_a_clear_answer(two):
    a = await two("a")
    await a.say("人脸与公安网照片不一致,请确保是账户本人操作")
    a.engine.store._exec("UPDATE conversations SET data = ?", (b"not a fernet token",))
    r = await a.say("是")
    assert "出了点问题" in r["text"]
    assert a.engine.store.event_counts()["message"] == 2
