"""需补充 answered inside the same appeal: what an operator asks for again, and what a supplement
round leaves behind.

- The request (items, note) is kept in the store's `meta` under `supplement:<appeal id>`, written
  with the status change; the creator's next "补充" starts a round that asks only for those items.
- A round's result is a new version of the package: the replaced files move to `v<N>/` inside the
  package (N = the version they belonged to), the new ones take their place, and appeal.json keeps
  `versions` (what each earlier version held) and `supplements` (each round: when, what, note).
  `appeals export` writes the latest with the earlier versions beside it.
- Email route: a follow-up email in the same thread (`In-Reply-To`/`References` the platform's reply,
  or our first email), subject `Re: <the original subject>`, with only the new files attached, stored
  as `supplement-<round>.eml.enc` and sent by the send queue under the key `<appeal id>#s<round>`.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

from bot.appeals.package import (
    APPEAL_JSON, EMAIL_EML, ENC, PackageError, _area, _sniff, message_id_of, package_key,
)
from bot.timefmt import email_date

_KEY = "supplement:{}"


# -- the operator's request ---------------------------------------------------------------------
def request_of(store, appeal_id: str) -> dict | None:
    raw = store.meta_value(_KEY.format(appeal_id))
    return json.loads(raw) if raw else None


def set_request(writes, appeal_id: str, items: list[str], note: str | None, at: datetime) -> None:
    writes.set_meta(_KEY.format(appeal_id), json.dumps(
        {"items": items, "note": note, "at": at.isoformat()}, ensure_ascii=False).encode())


def clear_request(writes, appeal_id: str) -> None:
    writes.set_meta(_KEY.format(appeal_id), None)


# -- the send queue's keys -------------------------------------------------------------------------
def send_key(appeal_id: str, round_no: int) -> str:
    return f"{appeal_id}#s{round_no}" if round_no else appeal_id


def parse_send_key(key: str) -> tuple[str, int]:
    appeal_id, _, n = key.partition("#s")
    return appeal_id, int(n) if n.isdigit() else 0


def followup_message_id(appeal_id: str, round_no: int) -> str:
    return message_id_of(appeal_id) if not round_no else f"<{appeal_id}.s{round_no}@dayu-bot.invalid>"


def eml_name(round_no: int) -> str:
    return EMAIL_EML if not round_no else f"supplement-{round_no}.eml"


# -- a new version of the package -----------------------------------------------------------------
def write_version(settings, vault, appeal_id: str, labels: dict[str, str], values: dict[str, str],
                  files: dict[str, bytes], note: str | None, reply_to: list[str], area=None,
                  now: datetime | None = None) -> dict:
    """Swap in a supplement round's items as the package's latest version (whole or not at all);
    returns the new appeal.json (its last `supplements` entry has the round's number). `reply_to`:
    Message-IDs the follow-up answers (latest first)."""
    now = now or datetime.now(timezone.utc)
    files_area = _area(settings, area)
    prefix = package_key(appeal_id)
    tokens = {key[len(prefix) + 1:]: files_area.read(key) for key, _ in files_area.files_with_age(prefix)}
    if APPEAL_JSON + ENC not in tokens:
        raise PackageError(f"找不到申诉材料包：{appeal_id}")
    meta = json.loads(vault.decrypt(tokens[APPEAL_JSON + ENC]))
    version = int(meta.get("version") or 1)
    round_no = len(meta.get("supplements") or []) + 1
    old = {"version": version, "replaced_at": now.isoformat(), "slots": {}, "attachments": []}
    attachments = list(meta.get("attachments") or [])
    new_attachments: list[dict] = []
    for slot, data in files.items():
        for att in [a for a in attachments if a["slot"] == slot]:
            moved = {**att, "stored": f"v{version}/{att['stored']}"}
            tokens[moved["stored"]] = tokens.pop(att["stored"])
            old["attachments"].append(moved)
            attachments.remove(att)
        ext, mime = _sniff(data)
        name = f"{slot}{ext}"
        att = {"slot": slot, "label": labels.get(slot, slot), "name": name, "stored": name + ENC, "mime": mime,
               "size": len(data)}
        tokens[att["stored"]] = vault.encrypt(data)
        attachments.append(att)
        new_attachments.append(att)
        meta.setdefault("slots", {})[slot] = name
    for slot, value in values.items():
        old["slots"][slot] = (meta.get("slots") or {}).get(slot)
        meta.setdefault("slots", {})[slot] = value
    meta["attachments"] = attachments
    meta["version"] = version + 1
    meta.setdefault("versions", []).append(old)
    meta.setdefault("supplements", []).append({
        "round": round_no, "at": now.isoformat(), "items": [*values, *files], "note": note,
        "version": version + 1})
    if meta.get("route") == "email":
        original = BytesParser(policy=policy.default).parsebytes(vault.decrypt(tokens[EMAIL_EML + ENC]))
        msg = followup_email(settings, appeal_id, round_no, str(original["Subject"] or ""), labels, values,
                             {a["slot"]: (a, files[a["slot"]]) for a in new_attachments}, note, reply_to, now)
        tokens[eml_name(round_no) + ENC] = vault.encrypt(msg.as_bytes(policy=policy.SMTP))
    tokens[APPEAL_JSON + ENC] = vault.encrypt(json.dumps(meta, ensure_ascii=False, indent=2).encode())
    files_area.write_tree(prefix, tokens)
    return meta


def followup_email(settings, appeal_id: str, round_no: int, subject: str, labels: dict[str, str],
                   values: dict[str, str], files: dict[str, tuple[dict, bytes]], note: str | None,
                   reply_to: list[str], now: datetime) -> EmailMessage:
    msg = EmailMessage()
    if settings.appeal_email:
        msg["To"] = settings.appeal_email
    msg["Subject"] = subject if subject.lower().startswith("re:") else f"Re: {subject}"
    msg["Date"] = email_date(now, settings)
    msg["Message-ID"] = followup_message_id(appeal_id, round_no)
    if reply_to:
        msg["In-Reply-To"] = reply_to[0]
        msg["References"] = " ".join(reversed(reply_to))
    lines = [f"您好，申诉编号 {appeal_id} 按要求补充以下材料（第 {round_no} 次补充）：", ""]
    for slot, value in values.items():
        lines.append(f"{labels.get(slot, slot)}：{value}")
    for slot, (att, _) in files.items():
        lines.append(f"{labels.get(slot, slot)}：见附件 {att['name']}")
    if note:
        lines += ["", f"平台要求：{note}"]
    msg.set_content("\n".join(lines) + "\n", charset="utf-8", cte="base64")
    for att, data in files.values():
        maintype, _, subtype = att["mime"].partition("/")
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=att["name"])
    return msg
