"""Replay runner: feed JSONL events to the engine, print one JSON line per bot reply.

Event lines (see docs/testing.md): {"from": "u1", "text": "..."} a DM; {"room": "r1", "from": "u1",
"mention": true, "text": "..."}; {"from": "u1", "image": "a.png"} / "video" / "file";
{"id": "m1", ...} message id for dedupe; {"at": "..."} drives the clock; {"tick": "..."} advances
the clock and fires due reminders/expiries. SCRIPT "-" reads stdin live and flushes each reply.
"""
from __future__ import annotations

import asyncio
import json
import sys
import uuid
from datetime import datetime, timezone
from pathlib import Path

from bot.engine import Engine
from bot.monitoring import start_monitoring, stop_monitoring
from bot.messages import Attachment, Incoming, Outgoing
from bot.settings import Settings


POLL_SECONDS = 1.0


class EventError(ValueError):
    pass


def _time(value) -> datetime:
    try:
        t = datetime.fromisoformat(str(value))
    except ValueError as exc:
        raise EventError(f"bad time {value!r}") from exc
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def parse_event(obj: dict, base_dir: Path, clock: datetime | None) -> Incoming | datetime:
    """An Incoming message, or the new clock for a tick event."""
    if not isinstance(obj, dict):
        raise EventError("an event must be a JSON object")
    if "tick" in obj:
        return _time(obj["tick"])
    sender = obj.get("from")
    if not isinstance(sender, str) or not sender:
        raise EventError('a message event needs "from"')
    attachment = None
    for kind in ("image", "video", "file"):
        if obj.get(kind):
            path = Path(str(obj[kind]))
            if not path.is_absolute() and not path.exists() and (base_dir / path).exists():
                path = base_dir / path
            attachment = Attachment(path, kind)
    room = obj.get("room")
    text = obj.get("text", "")
    if not isinstance(text, str):
        raise EventError('"text" must be a string')
    return Incoming(
        message_id=str(obj.get("id") or uuid.uuid4().hex), chat=str(room or sender), sender=sender,
        text=text, at=_time(obj["at"]) if obj.get("at") else clock, sender_name=str(obj.get("name", "")),
        room=bool(room), mention=bool(obj.get("mention")), attachment=attachment)


def reply_json(r: Outgoing) -> str:
    return json.dumps({"chat": r.chat, "to": r.to, "text": r.text, "prompt_id": r.prompt_id, "state": r.state,
                       "awaiting": r.awaiting, "appeal_id": r.appeal_id, "reply_to": r.reply_to},
                      ensure_ascii=False)


async def _print(r: Outgoing) -> None:
    sys.stdout.write(reply_json(r) + "\n")
    sys.stdout.flush()


async def run_replay(settings: Settings, script: str) -> int:
    engine = await Engine.open(settings)
    engine.reload_on_sighup()
    monitor = await start_monitoring(settings, engine)
    if script == "-":
        base_dir = Path.cwd()
        source = None
    else:
        base_dir = Path(script).resolve().parent
        try:
            source = iter(Path(script).read_text(encoding="utf-8").splitlines())
        except (OSError, UnicodeDecodeError) as exc:
            print(f"cannot read {script}: {exc}", file=sys.stderr)
            await stop_monitoring(monitor)
            await engine.close()
            return 2
    clock: datetime | None = None
    errors = 0
    lineno = 0
    poller = None
    if source is None:
        # Live: notifications committed by another process (an operator's `appeals status`) go
        # out within a second, without waiting for the next event.
        async def poll() -> None:
            while True:
                await asyncio.sleep(POLL_SECONDS)
                await engine.deliver(_print)

        poller = asyncio.create_task(poll())
    try:
        await engine.deliver(_print)  # what a crash left committed and unsent goes out first
        while True:
            line = next(source, None) if source is not None else await asyncio.to_thread(sys.stdin.readline)
            if line is None or (source is None and line == ""):
                break
            lineno += 1
            if not line.strip():
                continue
            try:
                event = parse_event(json.loads(line), base_dir, clock)
            except (json.JSONDecodeError, EventError) as exc:
                errors += 1
                print(f"line {lineno}: {exc}", file=sys.stderr)
                continue
            if isinstance(event, datetime):
                clock = event
                await engine.tick(clock)
            else:
                if event.at is not None:
                    clock = event.at
                await engine.handle(event)
            # Replies are printed from the durable outbox, then marked sent.
            await engine.deliver(_print)
        # The send queue, bounded, so that a script's output does not depend on timing.
        await engine.drain_sends(clock)
        await engine.deliver(_print)
    finally:
        if poller is not None:
            poller.cancel()
        await stop_monitoring(monitor)
        await engine.close()
    return 1 if errors else 0
