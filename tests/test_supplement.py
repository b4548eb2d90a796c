"""需补充 answered inside the same appeal: the operator names the items, the creator's "补充" asks
only for those, 确认 writes a new version of the package and (email route) sends a follow-up in the
same thread with only the new files; a real SMTP server (aiosmtpd) receives both emails."""
import hashlib
import json
import subprocess
import sys

from driver import Driver, email_answers, online_answers, run_appeal
from test_appeal_delivery import KEY, ROOT, at, smtp, smtp_env  # noqa: F401 (fixture)

from bot.appeals.package import export_appeal


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def _sent_appeal(tmp_path, smtp, media):
    d = await Driver.open(tmp_path, **smtp_env(smtp))
    r, _ = await run_appeal(d, email_answers(media), "没有")
    appeal_id = r["appeal_id"]
    await d.send(tick=at(30))
    assert len(smtp.box.received) == 1 and d.engine.store.appeal(appeal_id)["status"] == "sent"
    return d, appeal_id


async def test_need_more_with_items_is_answered_in_the_same_thread(tmp_path, smtp, media):
    d, appeal_id = await _sent_appeal(tmp_path, smtp, media)
    try:
        d.engine.change_appeal_status(appeal_id, "need_more", by="cli:ops", note="手持照片不清晰,请重新拍。",
                                      items="id_handheld_photo")
        await d.send(tick=at(31))
        note = [r for r in d.engine.unsent() if r.chat == "u1"][-1].text
        assert "手持身份证正面照片" in note and "回复“补充”" in note and "。。" not in note
        r = await d.say("补充")
        assert r["awaiting"] == "id_handheld_photo" and "(1/1)" in r["text"]
        r = await d.say("进度")
        assert "还差 1 项" in r["text"]
        r = (await d.send(**{"from": "u1", "image": str(media["back"])}))[-1]  # the new photo
        assert r["awaiting"] == "confirm" and "手持身份证正面照片" in r["text"] and "补充" in r["text"]
        r = await d.say("确认")
        assert r["appeal_id"] == appeal_id and d.engine.store.appeal(appeal_id)["status"] == "queued"
        await d.send(tick=at(40))
        assert len(smtp.box.received) == 2
        first, second = smtp.box.received[0][1], smtp.box.received[1][1]
        assert second["Subject"] == "Re: " + first["Subject"]
        assert second["In-Reply-To"] == first["Message-ID"]
        atts = list(second.iter_attachments())
        assert len(atts) == 1 and sha(atts[0].get_payload(decode=True)) == sha(media["back"].read_bytes())
        assert appeal_id in second.get_body(("plain",)).get_content()
        assert d.engine.store.appeal(appeal_id)["status"] == "sent"
        out = export_appeal(d.engine.settings, d.engine.vault, appeal_id, tmp_path / "x", area=d.engine.store.files)
        record = json.loads((out / "appeal.json").read_text(encoding="utf-8"))
        assert record["version"] == 2 and record["supplements"][0]["items"] == ["id_handheld_photo"]
        latest = list(out.glob("id_handheld_photo.*"))
        earlier = list((out / "v1").glob("id_handheld_photo.*"))
        assert sha(latest[0].read_bytes()) == sha(media["back"].read_bytes())
        assert sha(earlier[0].read_bytes()) == sha(media["handheld"].read_bytes())
        assert (out / "supplement-1.eml").exists()
        assert sha((out / "id_front_photo.png").read_bytes()) == sha(media["front"].read_bytes())  # untouched
    finally:
        await d.close()


async def test_need_more_without_items_asks_which_and_cancel_keeps_the_appeal(tmp_path, smtp, media):
    d, appeal_id = await _sent_appeal(tmp_path, smtp, media)
    try:
        d.engine.change_appeal_status(appeal_id, "need_more", by="cli:ops", note="信息不全")
        r = await d.say("好的")  # a yes starts it too
        assert r["awaiting"] == "supplement_which"
        r = await d.say("9和10")
        assert r["awaiting"] == "phone_model"
        r = await d.say("我用的是小米14 Pro")
        assert "小米14 Pro" in r["text"] and r["awaiting"] == "taobao_version"
        r = await d.say("取消")
        assert "不受影响" in r["text"]
        assert d.engine.store.appeal(appeal_id)["status"] == "need_more"
        r = await d.say("补充")  # the request is still there
        assert r["awaiting"] == "supplement_which"
    finally:
        await d.close()


async def test_online_route_supplement_is_uploaded_by_the_creator(tmp_path, media):
    d = await Driver.open(tmp_path)
    try:
        r, _ = await run_appeal(d, online_answers(media), "有")
        appeal_id = r["appeal_id"]
        d.engine.change_appeal_status(appeal_id, "need_more", by="cli:ops", items="4")  # by number
        r = (await d.send(**{"from": "u1", "image": str(media["front"])}))  # a photo right away
        assert r[-1]["awaiting"] == "confirm"
        r = await d.say("确认")
        assert "线上反馈" in r["text"] and "单独身份证反面照片" in r["text"]
        r = await d.say("传好了")
        assert "已提交" in r["text"] or "已记录" in r["text"]
        assert d.engine.store.appeal(appeal_id)["status"] == "sent"
    finally:
        await d.close()


def test_cli_need_more_with_items(tmp_path):
    env = {"BOT_APPEAL_KEY": KEY, "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "-m", "bot", "appeals", "status", "AP-20261205-ABCDEF", "need_more",
                        "--items", "nonsense", "--data-dir", str(tmp_path)], capture_output=True, text=True,
                       env={**__import__("os").environ, **env}, cwd=ROOT, timeout=120)
    assert p.returncode == 1 and "no appeal" in p.stderr
