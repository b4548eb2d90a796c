from __future__ import annotations

import json
import os
import stat
import sys
from datetime import datetime, timedelta, timezone
from email import policy
from email.parser import BytesParser
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from bot.appeals.crypto import AppealKeyError, Vault, VaultError, load_or_create_key, secure_dir
from bot.appeals.package import (
    APPEAL_ID_RE,
    PackageError,
    delete_appeals_of_user,
    export_appeal,
    list_appeals,
    new_appeal_id,
    read_appeal,
    write_package,
)
from bot.settings import Settings

sys.path.insert(0, str(Path(__file__).parent))
import media  # noqa: E402

ID = "11010519491231002X"  # checksum-valid test number
CST = timezone(timedelta(hours=8))

EMAIL_MATERIALS = [
    {"slot": "account_name", "label": "大鱼号名称"},
    {"slot": "real_name", "label": "姓名"},
    {"slot": "id_number", "label": "身份证号码"},
    {"slot": "id_handheld_photo", "label": "手持身份证正面照片(清晰)"},
    {"slot": "id_front_photo", "label": "单独身份证正面照片(清晰)"},
    {"slot": "id_back_photo", "label": "单独身份证反面照片"},
    {"slot": "error_prompt", "label": "异常提示语"},
    {"slot": "taobao_screenshot", "label": "淘宝认证异常截图"},
    {"slot": "phone_model", "label": "手机型号"},
    {"slot": "taobao_version", "label": "淘宝版本"},
    {"slot": "failure_video", "label": "实名认证失败录制视频(视频需清晰)"},
    {"slot": "military_docs", "label": "涉及军人可提供相关证件", "optional": True},
    {"slot": "contact", "label": "联系方式"},
]
ONLINE_MATERIALS = [
    {"slot": "failure_video", "label": "实名认证失败视频(非录屏)"},
    {"slot": "id_handheld_photo", "label": "手持身份证正面照片"},
    {"slot": "id_front_photo", "label": "单独身份证正面照片"},
    {"slot": "id_back_photo", "label": "单独身份证反面照片"},
]
PHOTO_SLOTS = ["id_handheld_photo", "id_front_photo", "id_back_photo", "taobao_screenshot"]


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        key_file=tmp_path / "config" / "dayu-bot" / "appeal.key",
        appeal_email="appeal@example.invalid",
    )


@pytest.fixture
def vault(settings) -> Vault:
    return Vault(load_or_create_key(settings))


@pytest.fixture
def media_files(tmp_path) -> dict[str, Path]:
    d = tmp_path / "incoming"
    d.mkdir()
    files = {
        "id_handheld_photo": media.make_jpeg(d / "hand.jpg", text="hand", seed=11),
        "id_front_photo": media.make_jpeg(d / "front.jpg", text="front", seed=12),
        "id_back_photo": media.make_png(d / "back.png", seed=13),
        "taobao_screenshot": media.make_png(d / "shot.png", w=400, h=800, seed=14),
        "failure_video": media.make_mp4(d / "fail.mp4", seconds=1),
    }
    return files


def email_record(appeal_id: str, media_files: dict, **slots) -> dict:
    base = {
        "account_name": "小鱼的日常",
        "real_name": "张三",
        "id_number": ID,
        "error_prompt": "身份证号码与姓名不一致",
        "phone_model": "华为 Mate 60 Pro",
        "taobao_version": "10.38.0",
        "military_docs": "skipped",
        "contact": "13812345678",
    }
    base.update({k: str(v) for k, v in media_files.items()})  # paths, as the dialog keeps them
    base.update(slots)
    return {
        "appeal_id": appeal_id,
        "route": "email",
        "prompt_id": 3,
        "prompt_text": "身份证号码与姓名不一致",
        "user": "wxid_creator1",
        "created_at": datetime(2026, 11, 25, 10, 0, tzinfo=CST),
        "confirmed_at": datetime(2026, 11, 25, 10, 20, tzinfo=CST),
        "slots": base,
        "materials": EMAIL_MATERIALS,
    }


def online_record(appeal_id: str, media_files: dict, user: str = "wxid_creator2") -> dict:
    return {
        "appeal_id": appeal_id,
        "route": "online",
        "prompt_id": 7,
        "prompt_text": "人脸识别不通过",
        "user": user,
        "created_at": "2026-11-24T09:00:00+08:00",
        "confirmed_at": "2026-11-24T09:05:00+08:00",
        "slots": {k: str(media_files[k]) for k in ["failure_video", *PHOTO_SLOTS[:3]]},
        "materials": ONLINE_MATERIALS,
    }


def all_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


# ------------------------------------------------------------------ ids

def test_new_appeal_id_format():
    now = datetime(2026, 11, 25, 8, 0, tzinfo=CST)
    ids = {new_appeal_id(now) for _ in range(200)}
    assert len(ids) == 200
    for i in ids:
        assert APPEAL_ID_RE.match(i) and i.startswith("AP-20261125-")
    assert APPEAL_ID_RE.match(new_appeal_id())


# ------------------------------------------------------------------ crypto

def test_key_file_created_securely(settings):
    key = load_or_create_key(settings)
    kf = settings.key_file
    assert kf.exists() and mode(kf) == 0o600 and mode(kf.parent) == 0o700
    Fernet(key)  # well-formed
    assert load_or_create_key(settings) == key  # stable
    assert not [p for p in kf.parent.iterdir() if p.name != kf.name]  # no temp left


def test_appeal_key_setting_wins(settings):
    key = Fernet.generate_key()
    settings.appeal_key = key.decode()
    assert load_or_create_key(settings) == key
    assert not settings.key_file.exists()


@pytest.mark.parametrize("bad", ["not-a-key", "YWJj"])
def test_malformed_key_is_clear(settings, bad):
    settings.appeal_key = bad
    with pytest.raises(AppealKeyError, match="Fernet"):
        load_or_create_key(settings)
    settings.appeal_key = ""
    settings.key_file.parent.mkdir(parents=True)
    settings.key_file.write_text(bad)
    with pytest.raises(AppealKeyError, match="Fernet"):
        load_or_create_key(settings)


def test_vault_roundtrip_and_wrong_key(tmp_path):
    v1, v2 = Vault(Fernet.generate_key()), Vault(Fernet.generate_key())
    token = v1.encrypt(b"secret " + ID.encode())
    assert ID.encode() not in token
    assert v1.decrypt(token) == b"secret " + ID.encode()
    with pytest.raises(VaultError, match="密钥"):
        v2.decrypt(token)
    p = v1.write(tmp_path / "a" / "b" / "x.enc", b"data")
    assert mode(p) == 0o600 and mode(p.parent) == 0o700 and mode(p.parent.parent) == 0o700
    assert v1.read(p) == b"data"
    with pytest.raises(VaultError):
        v2.read(p)
    with pytest.raises(VaultError):
        v1.read(tmp_path / "missing.enc")


def test_secure_dir(tmp_path):
    old = os.umask(0o022)
    try:
        d = secure_dir(tmp_path / "x" / "y")
    finally:
        os.umask(old)
    assert mode(d) == 0o700 and mode(d.parent) == 0o700


# ------------------------------------------------------------------ email route

def test_email_package_on_disk(settings, vault, media_files):
    appeal_id = new_appeal_id(datetime(2026, 11, 25, tzinfo=CST))
    pkg = write_package(settings, vault, email_record(appeal_id, media_files), media_files)
    assert pkg == settings.data_dir / "appeals" / appeal_id
    assert mode(pkg) == 0o700 and mode(pkg.parent) == 0o700
    names = sorted(p.name for p in pkg.iterdir())
    assert names == sorted([
        "appeal.json.enc", "email.eml.enc",
        "id_handheld_photo.jpg.enc", "id_front_photo.jpg.enc", "id_back_photo.png.enc",
        "taobao_screenshot.png.enc", "failure_video.mp4.enc",
    ])
    originals = [p.read_bytes() for p in media_files.values()]
    for f in all_files(pkg):
        assert mode(f) == 0o600
        blob = f.read_bytes()
        assert ID.encode() not in blob and "张三".encode() not in blob
        for orig in originals:
            assert orig[:64] not in blob
    # No temp dirs left behind.
    assert [p.name for p in pkg.parent.iterdir()] == [appeal_id]


def test_email_package_export(settings, vault, media_files, tmp_path):
    appeal_id = new_appeal_id()
    write_package(settings, vault, email_record(appeal_id, media_files), media_files)
    out = export_appeal(settings, vault, appeal_id, tmp_path / "export" / appeal_id)
    assert mode(out) == 0o700
    for f in all_files(out):
        assert mode(f) == 0o600

    meta = json.loads((out / "appeal.json").read_text("utf-8"))
    assert meta["route"] == "email" and meta["prompt_id"] == 3
    assert meta["prompt_text"] == "身份证号码与姓名不一致"
    assert meta["slots"]["id_number"] == ID  # full number, the platform needs it
    assert meta["slots"]["id_front_photo"] == "id_front_photo.jpg"
    assert meta["slots"]["military_docs"] is None and meta["skipped"] == ["military_docs"]
    assert meta["user"] == "wxid_creator1"
    assert meta["created_at"] == "2026-11-25T10:00:00+08:00"
    assert meta["recipient_missing"] is False
    assert str(media_files["id_front_photo"]) not in json.dumps(meta, ensure_ascii=False)  # no user paths

    for slot, src in media_files.items():
        ext = {".jpg": ".jpg", ".png": ".png", ".mp4": ".mp4"}[src.suffix]
        assert (out / f"{slot}{ext}").read_bytes() == src.read_bytes()

    with open(out / "email.eml", "rb") as fh:
        msg = BytesParser(policy=policy.default).parse(fh)
    assert msg["To"] == "appeal@example.invalid"
    assert msg["Subject"] == "个人实名认证失败材料-小鱼的日常"
    raw = (out / "email.eml").read_bytes()
    assert b"=?utf-8?" in raw.lower()  # RFC 2047 encoded, not raw UTF-8 headers
    assert "小鱼".encode() not in raw.split(b"\r\n\r\n", 1)[0]
    assert msg["Date"] is not None and msg["Message-ID"]

    body = msg.get_body(preferencelist=("plain",)).get_content()
    lines = [ln for ln in body.splitlines() if ln and ln[0] in "①②③④⑤⑥⑦⑧⑨⑩⑪⑫⑬"]
    assert lines == [
        "①大鱼号名称：小鱼的日常",
        "②姓名：张三",
        f"③身份证号码：{ID}",
        "④手持身份证正面照片(清晰)：见附件 id_handheld_photo.jpg",
        "⑤单独身份证正面照片(清晰)：见附件 id_front_photo.jpg",
        "⑥单独身份证反面照片：见附件 id_back_photo.png",
        "⑦异常提示语：身份证号码与姓名不一致",
        "⑧淘宝认证异常截图：见附件 taobao_screenshot.png",
        "⑨手机型号：华为 Mate 60 Pro",
        "⑩淘宝版本：10.38.0",
        "⑪实名认证失败录制视频(视频需清晰)：见附件 failure_video.mp4",
        "⑫涉及军人可提供相关证件：未涉及",
        "⑬联系方式：13812345678",
    ]

    atts = {a.get_filename(): a for a in msg.iter_attachments()}
    assert set(atts) == {
        "id_handheld_photo.jpg", "id_front_photo.jpg", "id_back_photo.png",
        "taobao_screenshot.png", "failure_video.mp4",
    }
    assert atts["id_front_photo.jpg"].get_content_type() == "image/jpeg"
    assert atts["id_back_photo.png"].get_content_type() == "image/png"
    assert atts["failure_video.mp4"].get_content_type() == "video/mp4"
    for slot, src in media_files.items():
        name = next(n for n in atts if n.startswith(slot + "."))
        assert atts[name].get_content() == src.read_bytes()


def test_email_with_military_docs(settings, vault, media_files, tmp_path):
    appeal_id = new_appeal_id()
    mil = media.make_jpeg(tmp_path / "mil.jpg", seed=99)
    files = {**media_files, "military_docs": mil.read_bytes()}  # bytes are accepted too
    write_package(settings, vault, email_record(appeal_id, media_files, military_docs=str(mil)), files)
    out = export_appeal(settings, vault, appeal_id, tmp_path / "out")
    msg = BytesParser(policy=policy.default).parsebytes((out / "email.eml").read_bytes())
    body = msg.get_body(preferencelist=("plain",)).get_content()
    assert "⑫涉及军人可提供相关证件：见附件 military_docs.jpg" in body
    assert (out / "military_docs.jpg").read_bytes() == mil.read_bytes()


def test_recipient_missing_is_flagged_not_invented(settings, vault, media_files, tmp_path):
    settings.appeal_email = ""
    appeal_id = new_appeal_id()
    write_package(settings, vault, email_record(appeal_id, media_files), media_files)
    meta = read_appeal(settings, vault, appeal_id)
    assert meta["recipient_missing"] is True and meta["recipient"] is None
    out = export_appeal(settings, vault, appeal_id, tmp_path / "out")
    msg = BytesParser(policy=policy.default).parsebytes((out / "email.eml").read_bytes())
    assert not msg["To"]
    assert "@" not in str(msg.get("To", ""))
    assert list_appeals(settings, vault)[0]["recipient_missing"] is True


def test_missing_required_material_fails(settings, vault, media_files):
    files = dict(media_files)
    del files["id_back_photo"]
    with pytest.raises(PackageError, match="id_back_photo"):
        write_package(settings, vault, email_record(new_appeal_id(), media_files), files)
    with pytest.raises(PackageError, match="contact"):
        write_package(settings, vault, email_record(new_appeal_id(), media_files, contact=""), media_files)
    appeals = settings.data_dir / "appeals"
    assert not appeals.exists() or not any(appeals.iterdir())  # nothing half-written


def test_writing_the_same_package_twice_gives_one_package(settings, vault, media_files):
    # A 确认 redelivered after a crash writes the same appeal id again: one package, whole.
    appeal_id = new_appeal_id()
    write_package(settings, vault, email_record(appeal_id, media_files), media_files)
    write_package(settings, vault, email_record(appeal_id, media_files), media_files)
    root = settings.data_dir / "appeals"
    assert [p.name for p in root.iterdir()] == [appeal_id]
    assert read_appeal(settings, vault, appeal_id)["appeal_id"] == appeal_id


@pytest.mark.parametrize("bad", ["../x", "AP-2026-1", "AP-20261125-ILOU00", ""])
def test_bad_appeal_id_rejected(settings, vault, media_files, bad, tmp_path):
    with pytest.raises(PackageError):
        write_package(settings, vault, email_record(bad, media_files), media_files)
    with pytest.raises(PackageError):
        export_appeal(settings, vault, bad, tmp_path / "out")


# ------------------------------------------------------------------ online route

def test_online_package(settings, vault, media_files, tmp_path):
    appeal_id = new_appeal_id()
    files = {k: media_files[k] for k in ["failure_video", *PHOTO_SLOTS[:3]]}
    pkg = write_package(settings, vault, online_record(appeal_id, media_files), files)
    assert not (pkg / "email.eml.enc").exists()
    out = export_appeal(settings, vault, appeal_id, tmp_path / "out")
    assert sorted(p.name for p in out.iterdir()) == sorted([
        "appeal.json", "failure_video.mp4", "id_handheld_photo.jpg", "id_front_photo.jpg", "id_back_photo.png",
    ])
    meta = json.loads((out / "appeal.json").read_text("utf-8"))
    assert meta["route"] == "online" and "recipient_missing" not in meta
    assert [a["slot"] for a in meta["attachments"]] == [m["slot"] for m in ONLINE_MATERIALS]
    assert {a["mime"] for a in meta["attachments"]} == {"video/mp4", "image/jpeg", "image/png"}


# ------------------------------------------------------------------ list / delete / keys

def test_list_appeals_masked(settings, vault, media_files):
    a1 = new_appeal_id()
    a2 = new_appeal_id()
    write_package(settings, vault, email_record(a1, media_files, real_name="买买提·艾力"), media_files)
    files = {k: media_files[k] for k in ["failure_video", *PHOTO_SLOTS[:3]]}
    write_package(settings, vault, online_record(a2, media_files), files)
    items = list_appeals(settings, vault)
    assert [i["appeal_id"] for i in items] == [a2, a1]  # by created_at
    email_item = items[1]
    assert email_item["route"] == "email" and email_item["prompt_id"] == 3
    assert email_item["masked_id_number"] == "110105********002X"
    assert email_item["masked_name"] == "买*"
    assert email_item["status"] == "pending"
    assert items[0]["masked_id_number"] is None and items[0]["masked_name"] is None
    assert ID not in json.dumps(items, ensure_ascii=False)


def test_wrong_key_fails_clearly(settings, vault, media_files, tmp_path):
    appeal_id = new_appeal_id()
    write_package(settings, vault, email_record(appeal_id, media_files), media_files)
    other = Vault(Fernet.generate_key())
    with pytest.raises(VaultError, match="密钥不对"):
        read_appeal(settings, other, appeal_id)
    with pytest.raises(VaultError):
        export_appeal(settings, other, appeal_id, tmp_path / "out")
    assert list_appeals(settings, other) == [{"appeal_id": appeal_id, "status": "unreadable"}]
    assert delete_appeals_of_user(settings, "wxid_creator1", other) == 0
    assert (settings.data_dir / "appeals" / appeal_id).exists()


def test_delete_appeals_of_user(settings, vault, media_files):
    files = {k: media_files[k] for k in ["failure_video", *PHOTO_SLOTS[:3]]}
    mine = [new_appeal_id(), new_appeal_id()]
    theirs = new_appeal_id()
    write_package(settings, vault, online_record(mine[0], media_files, user="u-1"), files)
    write_package(settings, vault, online_record(mine[1], media_files, user="u-1"), files)
    write_package(settings, vault, online_record(theirs, media_files, user="u-2"), files)
    assert delete_appeals_of_user(settings, "u-1", vault) == 2
    assert [i["appeal_id"] for i in list_appeals(settings, vault)] == [theirs]
    assert delete_appeals_of_user(settings, "u-1", vault) == 0
    # Without an explicit vault the configured key (the same key file) is used.
    assert delete_appeals_of_user(settings, "u-2") == 1
    assert list_appeals(settings, vault) == []
