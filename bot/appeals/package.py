"""The appeal package: everything a creator handed over, encrypted at rest.

Layout (every file Fernet-encrypted by a `Vault`; kept by the store's file area: on disk, dirs
0700 and files 0600, for SQLite; rows of the shared database for PostgreSQL)::

    appeals/<appeal_id>/
        appeal.json.enc          route, prompt, every slot (incl. the full ID number), file names
        <slot><ext>.enc          each attachment (ext from the sniffed content type)
        email.eml.enc            email route only: RFC 5322 message ready to send

Input files: the caller passes `files: {slot: bytes | path}` with the PLAIN content (a path
is read as-is); this module encrypts on write. The original paths are never stored.
"""
from __future__ import annotations

import json
import logging
import os
import re
import secrets
from collections.abc import Mapping
from datetime import date, datetime, timezone
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import filetype

from bot.appeals.crypto import Vault, VaultError, atomic_write, load_or_create_key, secure_dir
from bot.store.files import DiskFiles
from bot.dialog.validators import mask_id_number
from bot.timefmt import display_zone, email_date

__all__ = [
    "PackageError",
    "FILE_SLOTS",
    "APPEAL_ID_RE",
    "new_appeal_id",
    "build_email",
    "write_package",
    "read_appeal",
    "list_appeals",
    "export_appeal",
    "delete_appeals_of_user",
]

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
APPEAL_JSON = "appeal.json"
EMAIL_EML = "email.eml"
ENC = ".enc"

# Slots whose value is a file (photo/video). Materials may also say `kind: file`.
FILE_SLOTS = frozenset(
    {"id_handheld_photo", "id_front_photo", "id_back_photo", "taobao_screenshot", "failure_video", "military_docs"}
)
# How a skipped optional slot may be recorded by the dialog.
_SKIPPED = {"", "skip", "skipped", "none", "无", "没有", "未涉及", "不涉及"}
NOT_INVOLVED = "未涉及"

# Crockford base32: no I, L, O, U, so ids read aloud/typed back survive.
_ID_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
APPEAL_ID_RE = re.compile(r"^AP-\d{8}-[0-9A-HJKMNP-TV-Z]{6}$")
_CIRCLED = "①②③④⑤⑥⑦⑧⑨⑩⑪⑫⑬⑭⑮⑯⑰⑱⑲⑳"


class PackageError(Exception):
    """The record cannot be packaged, or a package cannot be found/read."""


def new_appeal_id(now: datetime | None = None, settings=None) -> str:
    """`AP-20261125-7K3Q9D`: the date people read (setting `timezone`), then 30 random bits in
    Crockford base32."""
    now = (now or datetime.now(timezone.utc)).astimezone(display_zone(settings))
    suffix = "".join(secrets.choice(_ID_ALPHABET) for _ in range(6))
    return f"AP-{now:%Y%m%d}-{suffix}"


def _area(settings, area):
    """Where packages are kept: the store's file area, or (tools and tests) the data dir."""
    return area if area is not None else DiskFiles(Path(settings.data_dir))


def package_key(appeal_id: str) -> str:
    # The id becomes a path component: accept nothing but the exact format.
    if not isinstance(appeal_id, str) or not APPEAL_ID_RE.match(appeal_id):
        raise PackageError(f"不是有效的申诉编号：{appeal_id!r}")
    return f"appeals/{appeal_id}"


def _package_dir(settings, appeal_id: str) -> Path:
    return Path(settings.data_dir) / package_key(appeal_id)


def read_package_file(settings, vault: Vault, appeal_id: str, stored: str, area=None) -> bytes:
    """One decrypted file of a package (`appeal.json.enc`, `email.eml.enc`, an attachment)."""
    try:
        token = _area(settings, area).read(f"{package_key(appeal_id)}/{_safe_stored(stored)}")
    except FileNotFoundError as exc:
        raise PackageError(f"找不到申诉材料包：{appeal_id}") from exc
    return vault.decrypt(token)


def _json_default(obj: Any):
    if isinstance(obj, (datetime, date)):
        return obj.isoformat()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _is_skipped(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip().lower() in _SKIPPED)


def _is_file_material(material: Mapping, files: Mapping) -> bool:
    return material.get("kind") == "file" or material["slot"] in FILE_SLOTS or material["slot"] in files


def _plain_bytes(source: bytes | bytearray | memoryview | str | os.PathLike) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    return Path(source).read_bytes()


def _sniff(data: bytes) -> tuple[str, str]:
    """(extension with dot, MIME type) judged by content."""
    kind = filetype.guess(data)
    if kind is None:
        return ".bin", "application/octet-stream"
    return f".{kind.extension}", kind.mime


def _label(material: Mapping) -> str:
    return str(material.get("label") or material["slot"]).lstrip(_CIRCLED).strip()


def _as_datetime(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    return None


def _one_line(text: str) -> str:
    return re.sub(r"[\r\n\t]+", " ", text).strip()


def message_id_of(appeal_id: str) -> str:
    return f"<{appeal_id}@dayu-bot.invalid>"


def build_email(
    settings, record: Mapping, attachments: list[dict], files_data: Mapping[str, bytes]
) -> EmailMessage:
    """The email-route message: subject, numbered body in the seed's order, attachments.

    `attachments` are the entries written to appeal.json (slot, name, mime);
    `files_data` maps slot -> plain bytes.
    """
    slots = record.get("slots") or {}
    account_name = _one_line(str(slots.get("account_name") or ""))
    msg = EmailMessage()
    if settings.appeal_email:
        msg["To"] = settings.appeal_email
    # No From: the package is sent by a person from their own mailbox. X-Unsent makes
    # common mail clients open the .eml as a draft ready to send.
    msg["Subject"] = f"个人实名认证失败材料-{account_name}"
    when = _as_datetime(record.get("confirmed_at")) or _as_datetime(record.get("created_at"))
    msg["Date"] = email_date(when or datetime.now(timezone.utc), settings)
    msg["Message-ID"] = message_id_of(str(record["appeal_id"]))  # stable: a resend is recognisable
    msg["X-Unsent"] = "1"

    by_slot = {a["slot"]: a for a in attachments}
    lines = ["您好，以下是个人实名认证失败的申诉材料：", ""]
    for i, material in enumerate(record["materials"]):
        slot = material["slot"]
        num = _CIRCLED[i] if i < len(_CIRCLED) else f"({i + 1})"
        if slot in by_slot:
            value = f"见附件 {by_slot[slot]['name']}"
        elif _is_skipped(slots.get(slot)) and material.get("optional"):
            value = NOT_INVOLVED
        elif slot == "error_prompt" and _is_skipped(slots.get(slot)):
            value = str(record.get("prompt_text") or "")
        else:
            value = str(slots.get(slot, ""))
        lines.append(f"{num}{_label(material)}：{value}")
    lines += ["", f"申诉编号：{record['appeal_id']}"]
    msg.set_content("\n".join(lines) + "\n", charset="utf-8", cte="base64")

    for att in attachments:
        maintype, _, subtype = att["mime"].partition("/")
        msg.add_attachment(files_data[att["slot"]], maintype=maintype, subtype=subtype, filename=att["name"])
    return msg


def write_package(
    settings, vault: Vault, record: Mapping, files: Mapping[str, bytes | str | os.PathLike], area=None
) -> Path:
    """Write the encrypted package for `record` and return its directory (on disk; with the
    database's file area, where it would be).

    Every material of `record["materials"]` must be present, except `optional` ones, which
    may be absent/None/"skipped". Written into a temp dir, then renamed into place, so a
    package is either complete or absent. Writing the same appeal id again replaces the package
    (a 确认 redelivered after a crash gives one package, not two).
    """
    appeal_id = record.get("appeal_id")
    key = package_key(appeal_id)
    route = record.get("route")
    if route not in ("online", "email"):
        raise PackageError(f"未知的申诉途径：{route!r}")
    slots_in: Mapping = record.get("slots") or {}
    materials = list(record.get("materials") or [])
    if not materials:
        raise PackageError("申诉记录缺少材料清单（materials）。")

    attachments: list[dict] = []
    files_data: dict[str, bytes] = {}
    slots_out: dict[str, Any] = {}
    skipped: list[str] = []
    for material in materials:
        slot = material["slot"]
        if _is_file_material(material, files):
            source = files.get(slot)
            if source is None:
                if material.get("optional"):
                    skipped.append(slot)
                    slots_out[slot] = None
                    continue
                raise PackageError(f"缺少材料文件：{slot}")
            try:
                data = _plain_bytes(source)
            except OSError as exc:
                raise PackageError(f"无法读取材料文件：{slot}（{exc.strerror or exc}）") from exc
            ext, mime = _sniff(data)
            name = f"{slot}{ext}"
            files_data[slot] = data
            attachments.append(
                {"slot": slot, "label": _label(material), "name": name, "stored": name + ENC,
                 "mime": mime, "size": len(data)}
            )
            slots_out[slot] = name  # the name inside the package, never the user's path
        else:
            value = slots_in.get(slot)
            if _is_skipped(value):
                if material.get("optional"):
                    skipped.append(slot)
                    slots_out[slot] = None
                    continue
                if not (slot == "error_prompt" and record.get("prompt_text")):
                    raise PackageError(f"缺少材料：{slot}")
                value = record.get("prompt_text")
            slots_out[slot] = value
    # Extra text slots the dialog kept (e.g. contact kind) travel along; extra file paths do not.
    for slot, value in slots_in.items():
        if slot not in slots_out and slot not in FILE_SLOTS and not isinstance(value, Path):
            slots_out[slot] = value

    if route == "email" and not slots_out.get("account_name"):
        raise PackageError("邮件途径需要大鱼号名称（account_name）。")

    meta: dict[str, Any] = {
        "format": FORMAT_VERSION,
        "appeal_id": appeal_id,
        "route": route,
        "status": record.get("status", "pending"),
        "prompt_id": record.get("prompt_id"),
        "prompt_text": record.get("prompt_text"),
        "user": record.get("user"),
        "created_at": record.get("created_at"),
        "confirmed_at": record.get("confirmed_at"),
        "written_at": datetime.now(timezone.utc),
        "slots": slots_out,
        "skipped": skipped,
        "materials": materials,
        "attachments": attachments,
    }
    if record.get("review_findings"):  # what looked wrong before 确认, and that the creator kept it
        meta["review_findings"] = record["review_findings"]
    if route == "email":
        meta["recipient"] = settings.appeal_email or None
        # Never invent an address: the seed redacts it, an operator must configure it.
        meta["recipient_missing"] = not settings.appeal_email
        meta["email"] = EMAIL_EML
        email_record = {**record, "slots": {**slots_in, **{k: v for k, v in slots_out.items() if v is not None}}}
        eml = build_email(settings, email_record, attachments, files_data).as_bytes(policy=policy.SMTP)

    tree = {att["stored"]: vault.encrypt(files_data[att["slot"]]) for att in attachments}
    if route == "email":
        tree[EMAIL_EML + ENC] = vault.encrypt(eml)
    body = json.dumps(meta, ensure_ascii=False, indent=2, default=_json_default).encode("utf-8")
    tree[APPEAL_JSON + ENC] = vault.encrypt(body)
    # Whole or not at all (the same package written again is swapped in whole).
    _area(settings, area).write_tree(key, tree)
    return _package_dir(settings, appeal_id)


def read_appeal(settings, vault: Vault, appeal_id: str, area=None) -> dict:
    """The decrypted appeal.json of one package."""
    try:
        return json.loads(read_package_file(settings, vault, appeal_id, APPEAL_JSON + ENC, area))
    except json.JSONDecodeError as exc:
        raise PackageError(f"申诉材料包已损坏：{appeal_id}") from exc


def _package_ids(settings, area=None) -> list[str]:
    return [name for name in _area(settings, area).folders("appeals") if APPEAL_ID_RE.match(name)]


def _mask_name(name: Any) -> str | None:
    if not isinstance(name, str) or not name:
        return None
    return name[0] + "*"


def list_appeals(settings, vault: Vault, area=None) -> list[dict]:
    """One summary per package, oldest first; identity masked. Unreadable ones are listed
    with `status: "unreadable"` (e.g. written with another key)."""
    out: list[dict] = []
    for appeal_id in _package_ids(settings, area):
        try:
            meta = read_appeal(settings, vault, appeal_id, area)
        except (VaultError, PackageError):
            out.append({"appeal_id": appeal_id, "status": "unreadable"})
            continue
        slots = meta.get("slots") or {}
        out.append({
            "appeal_id": appeal_id,
            "route": meta.get("route"),
            "status": meta.get("status", "pending"),
            "created_at": meta.get("created_at"),
            "confirmed_at": meta.get("confirmed_at"),
            "prompt_id": meta.get("prompt_id"),
            "masked_id_number": mask_id_number(slots["id_number"]) if slots.get("id_number") else None,
            "masked_name": _mask_name(slots.get("real_name")),
            "recipient_missing": bool(meta.get("recipient_missing", False)),
        })
    out.sort(key=lambda a: (str(a.get("created_at") or ""), a["appeal_id"]))
    return out


def _safe_stored(stored: str) -> str:
    """A stored name inside the package: a file, or one earlier version's file (`v1/<file>`)."""
    folder, _, name = stored.rpartition("/")
    if folder and not re.fullmatch(r"v\d{1,3}", folder):
        raise PackageError(f"材料包中的文件名无效：{stored!r}")
    return f"{folder}/{_safe_name(name)}" if folder else _safe_name(name)


def _safe_name(name: str) -> str:
    # Names come from our own appeal.json, but it is cheap to make sure none escapes out_dir.
    if not name or name != Path(name).name or name.startswith("."):
        raise PackageError(f"材料包中的文件名无效：{name!r}")
    return name


def export_appeal(settings, vault: Vault, appeal_id: str, out_dir: str | os.PathLike, area=None) -> Path:
    """Decrypt a package into `out_dir` (0700): appeal.json, email.eml (email route) and the
    attachments under their plain names (all 0600). Returns `out_dir`."""
    meta = read_appeal(settings, vault, appeal_id, area)
    out = secure_dir(out_dir)
    atomic_write(out / APPEAL_JSON, json.dumps(meta, ensure_ascii=False, indent=2).encode("utf-8"))
    if meta.get("route") == "email":
        atomic_write(out / EMAIL_EML, read_package_file(settings, vault, appeal_id, EMAIL_EML + ENC, area))
    for att in meta.get("attachments") or []:
        atomic_write(out / _safe_name(att["name"]), read_package_file(settings, vault, appeal_id, att["stored"], area))
    # After supplements: the latest above, each earlier version's replaced files beside it (v1/, v2/ …),
    # and each follow-up email as sent.
    for version in meta.get("versions") or []:
        folder = secure_dir(out / f"v{int(version['version'])}")
        for att in version.get("attachments") or []:
            atomic_write(folder / _safe_name(att["name"]),
                         read_package_file(settings, vault, appeal_id, att["stored"], area))
    for sup in meta.get("supplements") or []:
        name = f"supplement-{int(sup['round'])}.eml"
        try:
            atomic_write(out / name, read_package_file(settings, vault, appeal_id, name + ENC, area))
        except PackageError:  # the 线上反馈 route has no email
            pass
    return out


def delete_temp_packages(settings, appeal_ids=None, older_than: float | None = None, area=None) -> int:
    """Remove leftovers of interrupted writes (`.tmp-<id>-…`, `.old-<id>-…`): those of the given
    appeal ids, or any older than `older_than` seconds. Returns how many."""
    return _area(settings, area).delete_temp_folders("appeals", set(appeal_ids) if appeal_ids is not None else None,
                                                     older_than)


def delete_package(settings, appeal_id: str, area=None) -> bool:
    """Remove one package (retention); True when it existed."""
    return _area(settings, area).delete_tree(package_key(appeal_id))


def delete_appeals_of_user(settings, user: str, vault: Vault | None = None, area=None) -> int:
    """Remove every package whose appeal.json names `user`; returns how many.

    The user id is only inside the encrypted appeal.json, so the vault (or the configured
    key) is needed. Packages that cannot be decrypted are left alone and logged by id.
    """
    if vault is None:
        vault = Vault(load_or_create_key(settings))
    removed = 0
    for appeal_id in _package_ids(settings, area):
        try:
            meta = read_appeal(settings, vault, appeal_id, area)
        except (VaultError, PackageError):
            log.warning("cannot read appeal package %s; not deleted", appeal_id)
            continue
        if meta.get("user") == user:
            delete_package(settings, appeal_id, area)
            removed += 1
    return removed
