"""A scripted set of conversations with a known appeal funnel (not a test module): used by
tests/test_funnel.py (SQLite, in-process) and tests/test_funnel_pg.py (two processes on PostgreSQL).

    u1  prompt 2 -> 是 -> email route -> all 13 items -> 确认           (later: sent, replied, rejected)
    u2  prompt 2 -> 不用
    u3  prompt 2 -> 是 -> online route -> the video; a wrong answer at the handheld photo, asked again; stops
    u4  prompt 2 -> 是 -> email route -> account name, real name -> a wrong ID number; stops
    u5  prompt 17 (no appeal): the remedy only
    u6  prompt 15 -> 是 -> online route -> all 4 items -> 确认                    (later: resolved)
    u7  prompt 2 -> 是 -> email route -> account name -> 重新开始 -> email route -> account name, real name
        -> a wrong ID number; stops (the restart goes on with the same attempt: nothing counted twice)
    u8  prompt 2 in a group (@ the bot): the remedy; then in a DM "群里让我私聊": the offer -> 不用
"""
from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path

from driver import Driver
from web_support import PASSWORD

P2 = "人脸与公安网照片不一致,请确保是账户本人操作"
P15 = "非常规原因认证失败"
P17 = "无法生成实名认证二维码,页面显示空白"
ROOM = "room-1@chatroom"

EMAIL = [{"text": "小鱼的美食日记"}, {"text": "欧阳娜娜"}, {"text": "11010519491231002X"}]


def conversations(media) -> dict[str, list[dict]]:
    """Each user's messages, in order (users may be interleaved; one user's order is kept)."""
    email_rest = [{"image": str(media["handheld"])}, {"image": str(media["front"])}, {"image": str(media["back"])},
                  {"text": "对"}, {"image": str(media["screenshot"])}, {"text": "iPhone 13"}, {"text": "10.38.0"},
                  {"video": str(media["video"])}, {"text": "否"}, {"text": "13800138000"}, {"text": "确认"}]
    online = [{"video": str(media["video"])}, {"image": str(media["handheld"])}, {"image": str(media["front"])},
              {"image": str(media["back"])}, {"text": "确认"}]
    return {
        "u1": [{"text": P2}, {"text": "是"}, {"text": "没有"}, *EMAIL, *email_rest],
        "u2": [{"text": P2}, {"text": "不用"}],
        "u3": [{"text": P2}, {"text": "是"}, {"text": "有"}, online[0], {"text": "iPhone 13"}],
        "u4": [{"text": P2}, {"text": "是"}, {"text": "没有"}, *EMAIL[:2], {"text": "110105194912310021"}],
        "u5": [{"text": P17}],
        "u6": [{"text": P15}, {"text": "是"}, {"text": "有"}, *online],
        "u7": [{"text": P2}, {"text": "是"}, {"text": "没有"}, EMAIL[0], {"text": "重新开始"}, {"text": "没有"},
               *EMAIL[:2], {"text": "110105194912310021"}],
        "u8": [{"text": P2, "room": ROOM, "mention": True}, {"text": "群里让我私聊你"}, {"text": "不用"}],
    }


def events(media, order: list[str] | None = None) -> list[dict]:
    """The conversations as replay events with ids and times, users interleaved round-robin."""
    convs = conversations(media)
    queues = {u: list(msgs) for u, msgs in convs.items()}
    out, minute = [], 0
    while any(queues.values()):
        for user in order or list(queues):
            if queues[user]:
                ev = queues[user].pop(0)
                out.append({"id": f"{user}-{len(convs[user]) - len(queues[user]):02d}", "from": user,
                            "at": f"2026-11-24T{10 + minute // 60:02d}:{minute % 60:02d}:00+08:00", **ev})
                minute += 1
    return out


# What the funnel must count for these conversations, once u1's appeal was sent, replied to and
# rejected and u6's resolved (each status set twice: counted once).
EXPECTED_FUNNEL = {"remedy": 8, "offered": 7, "accepted": 5, "route_online": 2, "route_email": 3, "confirmed": 2,
                   "sent": 1, "replied": 1, "resolved": 1, "rejected": 1}
EXPECTED_EMAIL_ITEMS = {"account_name": (3, 3), "real_name": (3, 3), "id_number": (3, 1),
                        "id_handheld_photo": (1, 1), "contact": (1, 1)}  # slot: (reached, filled)
EXPECTED_ONLINE_ITEMS = {"failure_video": (2, 2), "id_handheld_photo": (2, 1), "id_back_photo": (1, 1)}
EXPECTED_STOP = {"route": "email", "slot": "id_number", "stopped": 2}
EXPECTED_GROUPS = {"identity_check": {"remedy": 6, "offered": 6, "accepted": 4, "confirmed": 1},
                   "abnormal_failure": {"remedy": 1, "offered": 1, "accepted": 1, "confirmed": 1},
                   "qr_blank": {"remedy": 1, "offered": 0, "accepted": 0, "confirmed": 0}}

# Status changes after the conversations, each twice: (user, status, by)
STATUSES = [("u1", "sent", "bot"), ("u1", "sent", "bot"), ("u1", "replied", "imap"), ("u1", "reviewing", "op"),
            ("u1", "rejected", "op"), ("u1", "rejected", "op"), ("u6", "resolved", "op"), ("u6", "resolved", "op")]


def expected_median(evs: list[dict]) -> float:
    """From the offer (each user's first message) to 确认 (their last), for u1 and u6: the median of two."""
    from datetime import datetime

    def span(user):
        mine = [datetime.fromisoformat(e["at"]) for e in evs if e["from"] == user]
        return (mine[-1] - mine[0]).total_seconds()
    return (span("u1") + span("u6")) / 2


def check_report(report: dict, evs: list[dict]) -> None:
    """The funnel of the scripted conversations (EXPECTED_*), as `funnel_report` or `stats --json` gives it."""
    assert report["attempts"] == 8
    assert {s["step"]: s["count"] for s in report["funnel"]} == EXPECTED_FUNNEL
    steps = {s["step"]: s for s in report["funnel"]}
    assert steps["accepted"]["dropped"] == 2 and steps["accepted"]["rate"] == round(5 / 7, 4)
    assert steps["confirmed"]["dropped"] == 3 and report["route_dropped"] == 0
    items = {(i["route"], i["slot"]): (i["reached"], i["filled"]) for i in report["items"]}
    for slot, want in EXPECTED_EMAIL_ITEMS.items():
        assert items[("email", slot)] == want, slot
    for slot, want in EXPECTED_ONLINE_ITEMS.items():
        assert items[("online", slot)] == want, slot
    email_order = [i["slot"] for i in report["items"] if i["route"] == "email"]
    assert email_order[:3] == ["account_name", "real_name", "id_number"] and len(email_order) == 13
    assert report["stop_item"] == EXPECTED_STOP
    assert report["median_offer_to_confirm_seconds"] == expected_median(evs) and report["offer_to_confirm_n"] == 2
    groups = {g["group"]: {s["step"]: s["count"] for s in g["funnel"]} for g in report["groups"]}
    assert set(groups) == set(EXPECTED_GROUPS)
    for name, want in EXPECTED_GROUPS.items():
        assert {k: groups[name][k] for k in want} == want, name


def apply_statuses(settings, store, kb, appeals: dict[str, str], at: datetime) -> None:
    """Each status of STATUSES the way its path sets it: the send queue and the IMAP poll commit a
    `Writes` (bot/appeals/sender.py, imap.py), operators go through `change_status`."""
    from bot.appeals.status import change_status
    from bot.store import Writes

    for n, (user, status, by) in enumerate(STATUSES):
        when = at + timedelta(minutes=n)
        if by == "op":
            change_status(settings, store, kb, appeals[user], status, by="cli:test", now=when)
        else:
            w = Writes()
            w.set_status(appeals[user], status, when, by, None, message_id="<m@x>" if status == "sent" else None)
            store.commit_turn(None, None, when, w, [])


def build_world(tmp: Path, media) -> dict:
    """A data dir holding the scripted conversations, their status changes and one operator ("ops")."""
    evs = events(media)

    async def build():
        d = await Driver.open(tmp, BOT_OCR_ENABLED="false")
        try:
            appeals = {}
            for ev in evs:
                for r in await d.send(**ev):
                    if r["appeal_id"]:
                        appeals[r["to"]] = r["appeal_id"]
            assert set(appeals) == {"u1", "u6"}, appeals
            e = d.engine
            apply_statuses(e.settings, e.store, e.snapshot.kb, appeals, d.clock + timedelta(hours=1))
            e.mark_sent(e.unsent())
            return d.engine.settings, appeals
        finally:
            await d.close()

    settings, appeals = asyncio.run(build())
    from bot.appeals.crypto import Vault, load_or_create_key
    from bot.store import Store
    from bot.web.auth import set_password

    store = Store(settings.db_path, Vault(load_or_create_key(settings)))
    set_password(store, "ops", PASSWORD)
    store.close()
    return {"settings": settings, "appeals": appeals, "events": evs, "tmp": tmp}
