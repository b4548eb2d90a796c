"""`python -m bot config`: the effective settings, secrets masked, and where each came from
(default, the TOML file, an environment variable, --data-dir); and the warning for a `BOT_*`
environment variable that is no setting (a typo would otherwise be silently ignored)."""
from __future__ import annotations

import difflib
import json
import unicodedata
from dataclasses import fields
from pathlib import Path

from bot.settings import Settings

# Values never printed: shown as set or empty. (A database URL is printed without its password.)
SECRETS = {"appeal_key", "smtp_password", "imap_password", "wechaty_token"}
# BOT_* variables that are read but are not settings.
NOT_SETTINGS = {"BOT_CONFIG"}


def unknown_env_warnings(env) -> list[str]:
    """One line per `BOT_*` variable that names no setting, with the closest setting's variable."""
    names = [f.name for f in fields(Settings)]
    out = []
    for var in sorted(v for v in env if v.startswith("BOT_") and v not in NOT_SETTINGS):
        name = var[4:].lower()
        if name in names:
            continue
        close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
        hint = f"; did you mean BOT_{close[0].upper()} ({close[0]})?" if close else ""
        out.append(f"warning: the environment variable {var} is not a setting and is ignored{hint}")
    return out


def shown_value(name: str, value) -> str:
    if name in SECRETS:
        return "***** (set)" if value else "(empty)"
    if name == "database_url" and value:
        from bot.store.postgres import redact

        return redact(str(value))
    if isinstance(value, list):
        return ", ".join(value) if value else "(none)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Path):
        return str(value)
    if value == "":
        return "(empty)"
    return str(value)


def rows(settings: Settings, sources: dict[str, str]) -> list[dict]:
    return [{"setting": f.name, "value": shown_value(f.name, getattr(settings, f.name)),
             "from": sources.get(f.name, "default")} for f in fields(Settings)]


def config_command(settings: Settings, sources: dict[str, str], as_json: bool = False) -> int:
    table = rows(settings, sources)
    if as_json:
        print(json.dumps(table, ensure_ascii=False, indent=1))
        return 0
    width = max(len(r["setting"]) for r in table)
    vwidth = min(48, max(_cells(r["value"]) for r in table))
    print(f"{'setting':<{width}}  {_pad('value', vwidth)}  from")
    for r in table:
        print(f"{r['setting']:<{width}}  {_pad(r['value'], vwidth)}  {r['from']}")
    return 0


def _cells(text: str) -> int:
    """Terminal columns: CJK characters take two."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _pad(text: str, width: int) -> str:
    return text + " " * max(0, width - _cells(text))
