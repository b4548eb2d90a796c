"""The replay runner and the appeals CLI as separate processes, as an operator or a test uses them."""
import json
import os
import subprocess
import sys

from conftest import ROOT


def _env(tmp_path, **extra):
    env = {**os.environ, "BOT_KEY_FILE": str(tmp_path / "keys" / "k"), "BOT_APPEAL_EMAIL": "appeals@example.invalid"}
    env.update(extra)
    return env


def replay(tmp_path, events, *, data="data", **env):
    script = tmp_path / f"script-{len(list(tmp_path.glob('script-*')))}.jsonl"
    script.write_text("\n".join(json.dumps(e, ensure_ascii=False) if isinstance(e, dict) else e
                                for e in events) + "\n", encoding="utf-8")
    p = subprocess.run([sys.executable, "-m", "bot", "replay", str(script), "--data-dir", str(tmp_path / data)],
                       capture_output=True, text=True, cwd=ROOT, env=_env(tmp_path, **env), timeout=120)
    return p, [json.loads(line) for line in p.stdout.splitlines()]


def test_restart_mid_collection_continues_where_it_was(tmp_path, media):
    p, out = replay(tmp_path, [
        {"from": "u1", "text": "姓名与身份证号不匹配,请重新确认并再次认证", "at": "2026-11-24T10:00:00+08:00"},
        {"from": "u1", "text": "是"}, {"from": "u1", "text": "没有"},
        {"from": "u1", "text": "小鱼号"}, {"from": "u1", "text": "张三"},
    ])
    assert p.returncode == 0, p.stderr
    assert out[-1]["awaiting"] == "id_number" and out[-1]["state"] == "collecting"
    assert set(out[0]) == {"chat", "to", "text", "prompt_id", "state", "awaiting", "appeal_id", "reply_to"}
    # A new process on the same data dir: same item, same collected data.
    p, out = replay(tmp_path, [{"from": "u1", "text": "进度", "at": "2026-11-24T10:05:00+08:00"},
                               {"from": "u1", "text": "11010519491231002X"},
                               {"from": "u1", "image": str(media["handheld"])}])
    assert p.returncode == 0, p.stderr
    assert "已完成 2 项:大鱼号名称、姓名" in out[0]["text"]
    assert out[1]["awaiting"] == "id_handheld_photo" and out[2]["awaiting"] == "id_front_photo"
    assert out[2]["prompt_id"] == 6


def test_reminder_fires_after_restart(tmp_path):
    replay(tmp_path, [{"from": "u1", "text": "验证不通过,请重新认证", "at": "2026-11-24T10:00:00+08:00"},
                      {"from": "u1", "text": "是"}, {"from": "u1", "text": "有"}])
    p, out = replay(tmp_path, [{"tick": "2026-11-24T10:45:00+08:00"}])
    assert len(out) == 1 and "还在吗" in out[0]["text"] and out[0]["awaiting"] == "failure_video"


def test_dedupe_across_processes(tmp_path):
    e = {"id": "wx-1", "from": "u1", "text": "认证信息已超过入驻上限"}
    _, first = replay(tmp_path, [e])
    _, second = replay(tmp_path, [e, {**e, "id": "wx-2"}])
    assert len(first) == 1 and len(second) == 1


def test_bad_event_lines_are_reported_and_skipped(tmp_path):
    p, out = replay(tmp_path, ["not json", '{"text": "no sender"}', '[1, 2]',
                               {"from": "u1", "text": "扫描二维码后提示“未知客户端”"}])
    assert p.returncode == 1
    assert len(out) == 1 and out[0]["prompt_id"] == 18
    assert "line 1" in p.stderr and "line 2" in p.stderr and "line 3" in p.stderr


def test_live_stdin_flushes_each_reply(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "bot", "replay", "-", "--data-dir", str(tmp_path / "data")],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT, env=_env(tmp_path))
    try:
        proc.stdin.write(json.dumps({"from": "u1", "text": "认证信息已超过入驻上限"}) + "\n")
        proc.stdin.flush()
        first = json.loads(proc.stdout.readline())  # answered before stdin closes
        assert first["prompt_id"] == 13
        proc.stdin.write(json.dumps({"from": "u1", "text": "帮助"}) + "\n")
        proc.stdin.flush()
        assert "删除我的资料" in json.loads(proc.stdout.readline())["text"]
        proc.stdin.close()
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()


def test_appeals_list_and_export(tmp_path, media):
    events = [{"from": "u1", "text": "验证不通过,请重新认证"}, {"from": "u1", "text": "是"},
              {"from": "u1", "text": "有"}, {"from": "u1", "video": str(media["video"])},
              {"from": "u1", "image": str(media["handheld"])}, {"from": "u1", "image": str(media["front"])},
              {"from": "u1", "image": str(media["back"])}, {"from": "u1", "text": "确认"}]
    p, out = replay(tmp_path, events)
    appeal_id = out[-1]["appeal_id"]
    assert appeal_id
    run = lambda *a: subprocess.run([sys.executable, "-m", "bot", "appeals", *a, "--data-dir",
                                     str(tmp_path / "data")], capture_output=True, text=True, cwd=ROOT,
                                    env=_env(tmp_path), timeout=60)
    listed = run("list")
    assert listed.returncode == 0 and appeal_id in listed.stdout and "online" in listed.stdout
    exported = run("export", appeal_id, "--out", str(tmp_path / "out"))
    assert exported.returncode == 0, exported.stderr
    assert (tmp_path / "out" / "failure_video.mp4").read_bytes() == media["video"].read_bytes()
    missing = run("export", "AP-20260101-AAAAAA", "--out", str(tmp_path / "o2"))
    assert missing.returncode == 1 and "AP-20260101-AAAAAA" in missing.stderr
    # Another key cannot read the packages.
    other = subprocess.run([sys.executable, "-m", "bot", "appeals", "export", appeal_id, "--out",
                            str(tmp_path / "o3"), "--data-dir", str(tmp_path / "data")], capture_output=True,
                           text=True, cwd=ROOT, env=_env(tmp_path, BOT_KEY_FILE=str(tmp_path / "other.key")))
    assert other.returncode == 1


def test_broken_knowledge_base_refuses_to_start_with_file_and_line(tmp_path):
    kdir = tmp_path / "kb"
    kdir.mkdir()
    (kdir / "prompts.yaml").write_text("version: 1\nprompts: [\n", encoding="utf-8")
    p, out = replay(tmp_path, [{"from": "u1", "text": "hi"}], BOT_KNOWLEDGE_DIR=str(kdir))
    assert p.returncode == 2 and "prompts.yaml:" in p.stderr and out == []
