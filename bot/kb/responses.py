"""The bot's own words: what the responses catalogue (knowledge/responses.yaml) must hold.

In the spirit of Rasa's domain responses: the dialog asks for a text by name and fills its
placeholders; every sentence the bot can say is in the catalogue, not in code. The catalogue is
checked at load against RESPONSES below: a missing or unknown name, a placeholder the code does not
fill, or a required placeholder left out is a load error (file:line), so a bad edit is refused by
`#reload` instead of failing mid-conversation.
"""
from __future__ import annotations

import string
from pathlib import Path

from bot.kb.errors import KnowledgeError

# name -> the placeholders the code fills. A name ending in "!" must appear in the text
# (a reply without the appeal id, or without the question it repeats, would be a dead end).
RESPONSES: dict[str, tuple[str, ...]] = {
    # general
    "help": (), "greeting": (), "greeting_new_friend": (), "short_hello": (), "thanks": (),
    "thanks_then": ("question!",), "ok_idle": (), "who_are_you": (), "not_understood": (),
    "out_of_scope": (), "question_not_known": (), "clarify": (), "no_text": ("question!",),
    "reask": ("question!",), "reask_fact": ("question!",), "error_generic": (),
    "human": (), "human_notified": (), "human_already_notified": (), "handoff_note": ("user!", "case!"),
    "handoff_case": ("prompt!", "route", "done!", "total!", "state"),
    # pending questions, in one line
    "ask_idle": (), "ask_choice": (), "ask_appeal_offer": (), "ask_military": (), "ask_confirm": (),
    "ask_file_slot": (), "ask_switch": (), "ask_delete_confirm": (), "resume_item": ("item!",),
    # remedies
    "remedy": ("prompt!", "remedy!"), "details_hint": (), "details": ("prompt", "remedy!"),
    "details_nothing": (), "choice_list": ("options!",), "appeal_offer": (), "appeal_offer_explain": (),
    "appeal_declined": (), "same_prompt_again": ("prompt!", "question!"), "room_appeal_hint": (), "email_unknown": (), "email_unknown_paren": (),
    # switching to a new prompt mid-appeal
    "switch_offer": ("prompt!",), "switch_reask": (), "switch_stay": ("question!",),
    "switch_kept": ("prompt", "remedy!"),
    # collecting
    "appeal_start": ("question!",), "appeal_needs_prompt": (), "route_online": ("count", "items!"),
    "route_email": ("count", "items!"), "ask_error_prompt_known": ("prompt!",), "ask_military_docs": ("ask!",),
    "recorded": (), "recorded_id": ("masked!",), "updated": (), "needs_file": ("kind!",),
    "id_number_in_wrong_item": ("item",), "mobile_in_wrong_item": ("item",), "file_not_received": ("question",), "error_prompt_invalid": (), "too_many_failures": (),
    "reask_item": ("item!",), "item_required": ("item", "expiry_hours"), "not_now_collecting": ("expiry_hours",),
    "recorded_value": ("item!", "value!"), "value_missing": ("item!", "question!"),
    "quit_ask": ("done", "expiry_hours"), "quit_reask": (), "edit_item": ("item!", "ask!"), "edit_which": (),
    "video_needed": ("question!",), "video_not_image": (), "file_ordinal": ("kind", "n!"), "file_queued": ("kind", "n!"),
    "file_which_numbered": ("n!", "kind", "seen", "options!"), "photo_seen": ("what!",),
    "review_warning": ("problems!",),
    # files
    "file_received": ("kind", "note"), "screenshot_prompt_note": ("prompt!",), "file_which": ("kind", "options!"),
    "file_which_reask": ("count!",), "file_discarded": ("question!",), "file_unused": ("question!",),
    "file_idle": (), "file_described": ("kind", "extra"), "media_seconds": ("seconds!",), "image_unreadable": (), "image_no_prompt": (),
    "image_not_picture": ("error!",),
    # summary and package
    "summary": ("lines!", "next!"), "edit_out_of_range": ("count!",), "confirm_reask": (),
    "summary_online": (), "summary_send_to": ("email!",), "summary_operator": (),
    "appeal_done_online": ("appeal_id!", "count", "items!"),
    "appeal_queued": ("appeal_id!", "email!", "subject"),
    "appeal_done_operator": ("appeal_id!", "subject"),
    "retention": ("retention_days!",), "delivery_smtp": ("email!",), "delivery_operator": (),
    # the appeal's life after 确认 (sent by the send queue or an operator's status change)
    "appeal_sent": ("appeal_id!", "email"), "appeal_send_failed": ("appeal_id!",),
    "appeal_too_large": ("appeal_id!",), "admin_appeal_failed": ("appeal_id!", "reason!"),
    "appeal_status_reviewing": ("appeal_id!", "note!", "retention_days"),
    "appeal_status_resolved": ("appeal_id!", "note!", "retention_days"),
    "appeal_status_rejected": ("appeal_id!", "note!", "retention_days"),
    "appeal_status_need_more": ("appeal_id!", "note!", "retention_days"),
    "appeal_status_note": ("note!",),
    "appeal_status_need_more_items": ("appeal_id!", "items!", "note"), "appeal_supplement_sent": ("appeal_id!", "email"),
    "supplement_start": ("appeal_id!", "items!"), "supplement_which": ("appeal_id!", "options!"),
    "supplement_which_reask": ("count!",), "supplement_summary": ("lines!",), "supplement_cancelled": (), "supplement_nothing": (),
    "supplement_queued": ("appeal_id!",), "supplement_operator": ("appeal_id!",),
    "supplement_online": ("appeal_id!", "items!"), "supplement_uploaded": ("appeal_id!",),
    "supplement_upload_reask": (),
    "progress_appeal": ("appeal_id!", "status!", "date", "note", "thread"),
    "thread_sent": ("at!",), "thread_supplement_sent": ("at!",), "thread_reply": ("at!", "first!"),
    "thread_need_more": ("at!", "items"),
    "appeal_replied": ("appeal_id!", "text!"), "status_replied": (),  # the platform's reply (bot/appeals/imap.py)
    **{f"status_{s}": () for s in ("ready", "queued", "sent", "failed", "reviewing", "resolved", "rejected",
                                   "need_more")},
    # commands
    "cancelled": (), "cancel_nothing": (), "paused": ("expiry_hours",), "pause_nothing": (),
    "resumed": ("question!",), "resume_nothing": (), "restarted": (), "skipped": (),
    "skip_required": ("question!",), "skip_nothing": (),
    "progress": ("done_count", "done!", "left_count", "left!", "question"), "progress_none": ("question",), "progress_route": ("question!",),
    "delete_ask": (), "deleted": ("count",), "not_deleted": ("question",),
    # timers
    "expired": ("expiry_hours",), "reminder": ("left!", "expiry_hours"), "reminder_route": (),
    # rooms
    "room_id_warning": (), "room_id_photo_warning": (), "room_no_files": (), "room_appeal_dm": ("hint",), "room_appeal_prompt": ("prompt!",),
    "appeal_not_for_prompt": ("prompt!", "remedy!"), "from_group": (), "from_group_continue": ("prompt!", "question!"),
}

# Placeholders of a group's chat remedy, and of FAQ answers.
CHAT_FIELDS = ("appeal_email", "name")
FAQ_FIELDS = ("item", "item_why", "item_what", "item_where", "appeal_email", "expiry_hours",
              "reminder_minutes", "online_materials", "email_materials", "delivery")
# What the dialog relies on in knowledge/intents.yaml.
REQUIRED_COMMANDS = ("cancel", "restart", "skip", "progress", "help", "delete", "appeal", "pause",
                     "details", "resume", "supplement")
REQUIRED_INTENTS = ("affirm", "consent", "deny", "unsure", "neutral", "not_now", "thanks", "greeting", "who_are_you",
                    "human", "no_prompt", "out_of_scope", "keep_data", "drop_data", "quit", "edit", "appeal_request",
                    "from_group")


def placeholders(text: str) -> set[str]:
    """The {names} a text uses; a malformed brace raises ValueError."""
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


_SENTENCE_END = "。！？!?.;；…"
_STOP = "。.，,;；"


def render(text: str, **fields) -> str:
    """The text with its fields filled in. Where a value already ends a sentence ("照片。") and the
    text goes on with a stop of its own ("说明:{note}。"), the text's stop is dropped: no "。。"."""
    values = {k: ("" if v is None else v) for k, v in fields.items()}
    fmt = string.Formatter()
    out: list[str] = []
    ends_sentence = False  # the last piece is a value that ends with a sentence's punctuation
    for literal, name, spec, conversion in fmt.parse(text):
        if literal:
            if ends_sentence and literal[0] in _STOP:
                literal = literal[1:]
            out.append(literal)
            ends_sentence = False
        if name is None:
            continue
        value = fmt.format_field(fmt.convert_field(fmt.get_field(name, (), values)[0], conversion),
                                 fmt.vformat(spec, (), values) if spec else "")
        if value:
            out.append(value)
            ends_sentence = value.rstrip()[-1:] in _SENTENCE_END if value.rstrip() else False
    return "".join(out)


def check_placeholders(path: Path | str, line: int | None, what: str, text: str, allowed, required=()) -> None:
    try:
        used = placeholders(text)
    except ValueError as exc:
        raise KnowledgeError(path, line, f"{what}: bad placeholder ({exc}); write {{{{ and }}}} for braces")
    unknown = sorted(used - set(allowed))
    if unknown:
        raise KnowledgeError(path, line, f"{what}: unknown placeholder {{{unknown[0]}}}"
                                         f" (known: {', '.join(allowed) or 'none'})")
    missing = [f for f in required if f not in used]
    if missing:
        raise KnowledgeError(path, line, f"{what}: missing placeholder {{{missing[0]}}}")


def check_dialog_knowledge(kdir: Path, routes, commands, intents, items, faq, responses) -> None:
    """After merging: the names the dialog relies on exist, and every text's placeholders fit."""
    for name, (text, path, line) in responses.items():
        if name not in RESPONSES:
            raise KnowledgeError(path, line, f"unknown response {name!r} (the code never says it)")
        spec = RESPONSES[name]
        check_placeholders(path, line, f"response {name!r}", text, [f.rstrip("!") for f in spec],
                           [f.rstrip("!") for f in spec if f.endswith("!")])
    missing = [n for n in RESPONSES if n not in responses]
    if missing:
        raise KnowledgeError(kdir, None, f"response {missing[0]!r} is missing from the responses catalogue")
    for name in REQUIRED_COMMANDS:
        if name not in commands:
            raise KnowledgeError(kdir, None, f"command {name!r} is not defined in any file")
    for name in REQUIRED_INTENTS:
        if name not in intents:
            raise KnowledgeError(kdir, None, f"intent {name!r} is not defined in any file")
    needed = {m.slot for r in routes.values() for m in r.materials} | {"route"}
    for slot in sorted(needed - items.keys()):
        raise KnowledgeError(kdir, None, f"item {slot!r} (how to ask for it) is not defined in any file")
    seen: dict[str, int] = {}
    for f, path, line in faq:
        if f.id in seen:
            raise KnowledgeError(path, line, f"duplicate FAQ id {f.id!r}")
        seen[f.id] = line
        check_placeholders(path, line, f"FAQ {f.id!r} answer", f.answer, FAQ_FIELDS)
        for p in f.phrasings:
            check_placeholders(path, line, f"FAQ {f.id!r} phrasing", p, ("item",))
