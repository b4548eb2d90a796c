"""bot.example.toml shows every setting of `bot.settings.Settings`, at its default, with one comment
line each, and the bot loads it as it is.

A new field of `Settings` without an example line fails here, and so does an example key that is
not a setting. The three path settings whose defaults depend on the machine (data_dir, key_file,
knowledge_dir) are shown commented out (`# name = value`) so that copying the file changes nothing.
"""
import os
import re
import subprocess
import sys
import tomllib
from dataclasses import asdict, fields
from pathlib import Path

import pytest

from bot.settings import REPO_ROOT, Settings, load_settings
from conftest import ROOT

EXAMPLE = ROOT / "bot.example.toml"
SETTING_LINE = re.compile(r"^(#\s*)?([a-z][a-z0-9_]*)\s*=\s*(.+)$")
COMMENTED_OK = {"data_dir", "key_file", "knowledge_dir"}  # machine-dependent defaults
SECRETS = {"appeal_key", "smtp_password", "imap_password", "wechaty_token"}


def _lines():
    return EXAMPLE.read_text(encoding="utf-8").splitlines()


def _examples() -> dict[str, tuple[int, bool, object]]:
    """name -> (line number, commented out?, value), from every `name = value` line."""
    out = {}
    for i, line in enumerate(_lines()):
        m = SETTING_LINE.match(line)
        if not m:
            continue
        name = m.group(2)
        assert name not in out, f"bot.example.toml:{i + 1}: {name} given twice"
        value = tomllib.loads(f"{name} = {m.group(3)}")[name]
        out[name] = (i, bool(m.group(1)), value)
    return out


def test_every_setting_has_an_example_line_and_every_example_is_a_setting():
    names = {f.name for f in fields(Settings)}
    examples = _examples()
    missing = sorted(names - examples.keys())
    unknown = sorted(examples.keys() - names)
    assert not missing, f"settings without a line in bot.example.toml: {missing}"
    assert not unknown, f"keys in bot.example.toml that are not settings: {unknown}"
    active = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    assert set(active) == {n for n, (_, commented, _) in examples.items() if not commented}
    assert {n for n, (_, commented, _) in examples.items() if commented} <= COMMENTED_OK


def test_each_setting_has_one_comment_line():
    lines = _lines()
    examples = _examples()
    for name, (i, _, _) in examples.items():
        above = lines[i - 1] if i else ""
        assert above.startswith("# ") and not SETTING_LINE.match(above) and len(above) > 4, \
            f"bot.example.toml:{i + 1}: {name} needs one comment line above it"
        before = lines[i - 2] if i > 1 else ""
        assert not before.strip() or SETTING_LINE.match(before), \
            f"bot.example.toml:{i + 1}: {name} has more than one comment line"


def test_every_example_value_is_the_default(monkeypatch):
    for var in ("XDG_DATA_HOME", "XDG_CONFIG_HOME"):  # the documented defaults
        monkeypatch.delenv(var, raising=False)
    defaults = Settings()
    for name, (i, _, value) in _examples().items():
        default = getattr(defaults, name)
        if isinstance(default, Path):
            path = Path(os.path.expanduser(value))
            value = path if path.is_absolute() else REPO_ROOT / path
        assert value == default and type(value) is type(default), \
            f"bot.example.toml:{i + 1}: {name} = {value!r}, the default is {default!r}"
    for name in SECRETS:
        assert _examples()[name][2] == "", f"{name}: keep secrets out of the example"


def test_the_bot_loads_it_as_it_is(monkeypatch):
    monkeypatch.chdir(ROOT)
    loaded = load_settings(config=Path("bot.example.toml"), env={})
    assert asdict(loaded) == asdict(load_settings(env={}))  # the example changes nothing


def test_a_command_accepts_it():
    out = subprocess.run([sys.executable, "-m", "bot", "kb", "check", "--config", "bot.example.toml"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={k: v for k, v in os.environ.items() if not k.startswith("BOT_")})
    assert out.returncode == 0, out.stderr
    assert "settings error" not in out.stderr


@pytest.mark.parametrize("name", ["smtp_security", "imap_security", "room_mode"])
def test_the_documented_choices_are_accepted(tmp_path, name):
    """The comment lists the choices; each of them loads."""
    lines = _lines()
    i, _, _ = _examples()[name]
    choices = re.findall(r"\b(starttls|ssl|none|off|mention|auto)\b", lines[i - 1])
    assert len(choices) == 3, lines[i - 1]
    for choice in choices:
        cfg = tmp_path / "bot.toml"
        cfg.write_text(f'{name} = "{choice}"\n', encoding="utf-8")
        assert getattr(load_settings(cfg, env={}), name) == choice
