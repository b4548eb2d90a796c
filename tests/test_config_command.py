"""`python -m bot config`: the effective settings, secrets masked, where each came from; and a
warning naming the closest setting for a BOT_* variable that is none."""
import json
import os
import subprocess
import sys

from bot.config_report import unknown_env_warnings
from conftest import ROOT


def run_config(tmp_path, *args, **env):
    base = {k: v for k, v in os.environ.items() if not k.startswith("BOT_")}
    return subprocess.run([sys.executable, "-m", "bot", "config", *args], cwd=ROOT, env={**base, **env},
                          capture_output=True, text=True, timeout=60)


def test_config_prints_every_setting_with_its_source_and_masks_secrets(tmp_path):
    toml = tmp_path / "bot.toml"
    toml.write_text('smtp_host = "smtp.example.com"\nadmins = ["boss", "ops"]\nimap_password = "imap-s3cret"\n'
                    'smtp_port = 465\n', "utf-8")
    out = run_config(tmp_path, "--config", str(toml), "--data-dir", str(tmp_path / "d"),
                     BOT_SMTP_PORT="2525", BOT_SMTP_PASSWORD="smtp-s3cret", BOT_TIMEZONE="UTC",
                     BOT_DATABASE_URL="postgresql://bot:pg-s3cret@db.example/bot?password=pg-s3cret2",
                     WECHATY_PUPPET_SERVICE_TOKEN="token-s3cret")
    assert out.returncode == 0, out.stderr
    lines = {line.split()[0]: line for line in out.stdout.splitlines()}
    assert lines["smtp_host"].split()[1:] == ["smtp.example.com", "file", str(toml)]
    assert lines["admins"].split(None, 1)[1].startswith("boss, ops") and lines["admins"].endswith(f"file {toml}")
    assert lines["smtp_port"].split()[1:] == ["2525", "env", "BOT_SMTP_PORT"]  # env beats the file
    assert lines["data_dir"].split()[1:] == [str(tmp_path / "d"), "--data-dir"]
    assert lines["timezone"].split()[1:] == ["UTC", "env", "BOT_TIMEZONE"]
    assert lines["room_mode"].split()[1:] == ["mention", "default"]
    assert lines["smtp_password"].endswith("env BOT_SMTP_PASSWORD") and "(set)" in lines["smtp_password"]
    assert lines["wechaty_token"].endswith("env WECHATY_PUPPET_SERVICE_TOKEN")
    assert "(empty)" in lines["appeal_key"] and lines["appeal_key"].endswith("default")
    assert "s3cret" not in out.stdout + out.stderr
    assert "postgresql://bot:***@db.example/bot" in lines["database_url"]
    from bot.settings import Settings
    from dataclasses import fields

    assert set(lines) - {"setting"} == {f.name for f in fields(Settings)}


def test_config_json(tmp_path):
    out = run_config(tmp_path, "--json", BOT_ADMINS="a,b", BOT_APPEAL_KEY="k" * 44)
    rows = {r["setting"]: r for r in json.loads(out.stdout)}
    assert rows["admins"] == {"setting": "admins", "value": "a, b", "from": "env BOT_ADMINS"}
    assert rows["appeal_key"]["value"] == "***** (set)" and "k" * 44 not in out.stdout


def test_an_unknown_bot_variable_is_warned_about_with_the_closest_setting(tmp_path):
    out = run_config(tmp_path, BOT_SMTP_HOSTNAME="smtp.example.com", BOT_ADMIN="boss", BOT_ZZZ_QQQ="1",
                     BOT_CONFIG=str(tmp_path / "none.toml"))
    assert out.returncode == 2  # the missing config file is an error, not a warning
    out = run_config(tmp_path, BOT_SMTP_HOSTNAME="smtp.example.com", BOT_ADMIN="boss", BOT_ZZZ_QQQ="1")
    assert out.returncode == 0
    warnings = out.stderr.strip().splitlines()
    assert warnings == [
        "warning: the environment variable BOT_ADMIN is not a setting and is ignored; "
        "did you mean BOT_ADMINS (admins)?",
        "warning: the environment variable BOT_SMTP_HOSTNAME is not a setting and is ignored; "
        "did you mean BOT_SMTP_HOST (smtp_host)?",
        "warning: the environment variable BOT_ZZZ_QQQ is not a setting and is ignored",
    ]
    assert unknown_env_warnings({"BOT_CONFIG": "x", "BOT_SMTP_HOST": "y"}) == []
