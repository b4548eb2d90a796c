import pytest

from bot.settings import SettingsError, load_settings


def test_precedence_defaults_file_env_flag(tmp_path):
    cfg = tmp_path / "bot.toml"
    cfg.write_text('appeal_email = "file@example.invalid"\nadmins = ["a1", "a2"]\nreminder_minutes = 10\n'
                   'room_mode = "auto"\n', encoding="utf-8")
    s = load_settings(cfg, env={})
    assert s.appeal_email == "file@example.invalid" and s.admins == ["a1", "a2"] and s.reminder_minutes == 10
    s = load_settings(cfg, env={"BOT_ADMINS": "x, y", "BOT_APPEAL_EMAIL": "env@example.invalid",
                                "BOT_DATA_DIR": str(tmp_path / "envdata")})
    assert s.admins == ["x", "y"] and s.appeal_email == "env@example.invalid"
    assert s.data_dir == tmp_path / "envdata"
    s = load_settings(cfg, data_dir=tmp_path / "flag", env={"BOT_DATA_DIR": str(tmp_path / "envdata")})
    assert s.data_dir == tmp_path / "flag"
    assert load_settings(env={}).appeal_email == ""  # never invented


def test_wechaty_variables(tmp_path):
    s = load_settings(env={"WECHATY_PUPPET_SERVICE_TOKEN": "t", "WECHATY_PUPPET_SERVICE_ENDPOINT": "127.0.0.1:1"})
    assert (s.wechaty_token, s.wechaty_endpoint) == ("t", "127.0.0.1:1")


@pytest.mark.parametrize("content,error", [("nope = 1\n", "unknown setting"), ("room_mode = 'loud'\n", "room_mode"),
                                           ("reminder_minutes = 'x'\n", "reminder_minutes"), ("=\n", "bot.toml")])
def test_bad_settings_are_named(tmp_path, content, error):
    cfg = tmp_path / "bot.toml"
    cfg.write_text(content, encoding="utf-8")
    with pytest.raises(SettingsError, match=error):
        load_settings(cfg, env={})
