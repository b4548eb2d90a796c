"""One turn as operators review it (the web console's /conversations): what the creator said
(redacted: item values known to the conversation, ID numbers and mobiles replaced by their item's
name, files by their kind), the bot's replies (redacted the same way), the states before and after,
and the reading (acts, intents, FAQ, prompt and tier). Whether the turn looks misread: the bot
re-asked its question, said it did not understand, or the creator repeated themselves.

`before(conv)` is taken before the dialog runs, `reading_of(turn)` when it ends (Dispatch.handle),
and `record(...)` adds the row to the turn's writes (stored encrypted, in the turn's transaction)."""
from __future__ import annotations

from dataclasses import dataclass

from bot.dialog.slots import NOT_APPLICABLE, SLOTS
from bot.dialog.turn import Turn, awaiting_of
from bot.messages import Incoming, Outgoing
from bot.privacy import redact_named
from bot.store import Conversation, Writes
from bot.store.transcripts import conversation_id

FILE_KINDS = {"image": "〔图片〕", "video": "〔视频〕", "file": "〔文件〕"}
ANSWERED_INTENTS = {"human", "who_are_you", "not_now", "thanks", "greeting", "out_of_scope"}


@dataclass(frozen=True)
class Before:
    state: str
    awaiting: str | None
    slots: dict
    prompt_id: int | None


def before(conv: Conversation) -> Before:
    data = conv.data or {}
    return Before(conv.state, awaiting_of(conv), dict(data.get("slots") or {}), data.get("prompt_id"))


def known_values(kb, *slot_dicts: dict) -> dict[str, str]:
    """Text item values the conversation holds (before or after the turn) -> their item's name."""
    out: dict[str, str] = {}
    for slots in slot_dicts:
        for slot, value in slots.items():
            spec = SLOTS.get(slot)
            if spec is None or spec.kind != "text" or not isinstance(value, str) or len(value.strip()) < 2:
                continue
            if value == NOT_APPLICABLE:
                continue
            out[value.strip()] = kb.items[slot].label if slot in kb.items else slot
    return out


def reading_of(t: Turn, original) -> dict:
    """How the dialog read the message (`original`: the reading before any split into acts)."""
    rd, match = t.reading, t._match
    if rd is None:
        return {"acts": ["file"]}
    acts = []
    if original is not None and original is not rd:
        acts.append("split")  # an answer followed by a question
    if rd.command:
        acts.append(f"command:{rd.command}")
    if rd.unsure:
        acts.append("unsure")
    elif rd.polarity is not None:
        acts.append(("consent" if rd.consent_only else "yes") if rd.polarity else "no")
    if rd.question:
        acts.append("question")
    return {"acts": acts, "intents": sorted(rd.intents), "faq": rd.faq, "item": rd.item,
            "prompt": match.id if match is not None and match.tier != "none" else None,
            "tier": match.tier if match is not None else None}


def misread_reasons(b: Before, conv: Conversation, writes: Writes, text: str, previous: str | None) -> list[str]:
    """Why the turn looks misread: "reasked", "not_understood", "repeated" (none: [])."""
    reasons = []
    reading = writes.reading or {}
    # a command, an FAQ answer or small talk answered (转人工, who are you, not now ...) keeps the
    # question pending on purpose: not a re-ask
    answered = (any(a.startswith("command:") for a in reading.get("acts", ())) or reading.get("faq")
                or set(reading.get("intents", ())) & ANSWERED_INTENTS)
    slots_after = (conv.data or {}).get("slots") or {}
    if (b.state != "idle" and conv.state == b.state and awaiting_of(conv) == b.awaiting
            and slots_after == b.slots and not answered):
        reasons.append("reasked")
    if writes.not_understood or writes.unmatched:
        reasons.append("not_understood")
    if text and previous is not None and text == previous:
        reasons.append("repeated")
    return reasons


def record(kb, store, writes: Writes, msg: Incoming, b: Before, conv: Conversation,
           replies: list[Outgoing], now) -> None:
    """Add this DM turn's transcript row to `writes` (nothing in rooms)."""
    if msg.room or msg.sender in writes.deleted_users:  # 删除我的资料: nothing of this creator is kept
        return
    values = known_values(kb, b.slots, (conv.data or {}).get("slots") or {})
    if msg.attachment is not None:
        text = FILE_KINDS.get(msg.attachment.kind, "〔文件〕")
    else:
        text = redact_named(" ".join((msg.text or "").split()), values)[:500]
    conv_id = conversation_id(msg.chat, msg.sender)
    previous = store.last_transcript_text(conv_id) if msg.attachment is None else None
    misread = misread_reasons(b, conv, writes, text, previous) if msg.attachment is None else []
    reading = dict(writes.reading or {})
    slots_after = (conv.data or {}).get("slots") or {}
    taken = [slot for slot, value in slots_after.items() if b.slots.get(slot) != value]
    if taken:  # the message gave an item's value (or a file)
        reading["acts"] = [*reading.get("acts", []), *(f"value:{slot}" for slot in taken)]
    payload = {"text": text, "file": msg.attachment is not None, "awaiting_before": b.awaiting,
               "awaiting_after": awaiting_of(conv), "reading": reading,
               "replies": [redact_named(r.text, values) for r in replies if r.text]}
    prompt_id = (conv.data or {}).get("prompt_id") or b.prompt_id or (writes.reading or {}).get("prompt")
    writes.add_transcript(conv_id, msg.chat, msg.sender, now, b.state, conv.state, prompt_id, misread, payload)
