"""One settings object for every command: defaults < TOML file (--config) < BOT_* environment.

Each field is documented in docs/configuration.md and, with its default, in bot.example.toml.
"""
from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def _default_data_dir() -> Path:
    return Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share")) / "dayu-bot"


def _default_key_file() -> Path:
    # Outside the data dir on purpose: a copied data dir alone does not decrypt.
    return Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config")) / "dayu-bot" / "appeal.key"


@dataclass
class Settings:
    data_dir: Path = field(default_factory=_default_data_dir)
    # sqlite:///path (default: bot.sqlite3 in the data dir) or postgresql://user:pass@host:port/db,
    # the store several processes (one per WeChat account) share
    database_url: str = ""
    account: str = "main"  # this process's WeChat account, as the shared store names it
    timezone: str = "Asia/Shanghai"  # the times people read (the store keeps UTC)
    outbox_lease_seconds: float = 30.0  # shared store: a dead process's claimed replies go out after this
    knowledge_dir: Path = REPO_ROOT / "knowledge"
    appeal_email: str = ""  # the 大鱼号 mailbox; the seed redacts it, so it must be configured
    admins: list[str] = field(default_factory=list)
    reminder_minutes: float = 30.0
    expiry_hours: float = 24.0
    max_validation_failures: int = 3
    # contact ids told (with the creator's id and the masked state of their case) when a
    # creator asks for a human ("转人工")
    handoff_to: list[str] = field(default_factory=list)
    key_file: Path = field(default_factory=_default_key_file)
    appeal_key: str = ""  # base64 Fernet key; wins over key_file when set
    max_attachment_mb: float = 50.0
    log_level: str = "INFO"
    # WeChat transport
    wechaty_token: str = ""
    wechaty_endpoint: str = ""
    room_mode: str = "mention"  # off | mention | auto
    room_allowlist: list[str] = field(default_factory=list)
    friend_keywords: list[str] = field(default_factory=lambda: ["认证", "申诉", "实名"])
    send_min_gap_seconds: float = 1.0
    send_per_minute: int = 40
    # Sending the email route's package (aiosmtplib); unset smtp_host = the operator submits it
    smtp_host: str = ""
    smtp_port: int = 587
    smtp_security: str = "starttls"  # starttls | ssl | none
    smtp_user: str = ""
    smtp_password: str = ""
    smtp_password_file: str = ""
    smtp_from: str = ""
    smtp_max_mb: float = 25.0
    smtp_timeout_seconds: float = 60.0
    appeal_retention_days: float = 30.0  # after resolved/rejected, the package is deleted
    transcript_days: float = 7.0  # DM turns kept (redacted, encrypted) for conversation review; 0 = none
    # Reading the platform's replies (imaplib); unset imap_host = no polling
    imap_host: str = ""
    imap_port: int = 993
    imap_security: str = "ssl"  # ssl | starttls | none
    imap_user: str = ""
    imap_password: str = ""
    imap_password_file: str = ""  # first line; wins over imap_password
    imap_mailbox: str = "INBOX"
    imap_poll_seconds: float = 60.0  # 0 = on every tick
    imap_timeout_seconds: float = 30.0
    reply_forward: bool = True  # tell the creator a reply's text in their DM
    # The operators' web console (python -m bot web, or run --web)
    web_host: str = "127.0.0.1"
    web_port: int = 8080
    web_allow_remote: bool = False  # listening on anything but loopback needs this (and a TLS proxy)
    web_secure_cookie: bool = False  # set behind a TLS reverse proxy: the session cookie gets Secure
    # Monitoring (docs/monitoring.md): /metrics, /healthz and /readyz of `run` (and chat, replay)
    metrics_port: int = 0  # 0 = off
    metrics_host: str = "127.0.0.1"
    # OCR of screenshots (optional extra)
    ocr_enabled: bool = True
    ocr_max_pixels: int = 40_000_000
    ocr_timeout_seconds: float = 20.0

    @property
    def db_path(self) -> Path:
        return self.data_dir / "bot.sqlite3"


# Environment names that differ from BOT_<FIELD>.
_ENV_ALIASES = {
    "wechaty_token": ("WECHATY_PUPPET_SERVICE_TOKEN",),
    "wechaty_endpoint": ("WECHATY_PUPPET_SERVICE_ENDPOINT",),
}


def _coerce(name: str, current, raw):
    if isinstance(current, bool):
        if isinstance(raw, bool):
            return raw
        return str(raw).strip().lower() in {"1", "true", "yes", "on"}
    if isinstance(current, Path):
        return Path(os.path.expanduser(str(raw)))
    if isinstance(current, list):
        if isinstance(raw, list):
            return [str(x).strip() for x in raw if str(x).strip()]
        return [x.strip() for x in str(raw).split(",") if x.strip()]
    if isinstance(current, int) and not isinstance(current, bool):
        return int(raw)
    if isinstance(current, float):
        return float(raw)
    return str(raw)


class SettingsError(ValueError):
    pass


def load_settings(config: Path | None = None, data_dir: Path | None = None,
                  env: dict[str, str] | None = None, sources: dict[str, str] | None = None) -> Settings:
    """The settings; `sources`, when given, is filled with where each one that is not a default
    came from (`file PATH`, `env VAR`, `--data-dir`): `python -m bot config` shows them."""
    env = os.environ if env is None else env
    sources = {} if sources is None else sources
    s = Settings()
    known = {f.name for f in fields(Settings)}
    config = config or (Path(env["BOT_CONFIG"]) if env.get("BOT_CONFIG") else None)
    if config is not None:
        try:
            with open(config, "rb") as fh:
                data = tomllib.load(fh)
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise SettingsError(f"{config}: {exc}") from exc
        for key, value in data.items():
            if key not in known:
                raise SettingsError(f"{config}: unknown setting {key!r}")
            try:
                setattr(s, key, _coerce(key, getattr(s, key), value))
            except (TypeError, ValueError) as exc:
                raise SettingsError(f"{config}: {key}: {exc}") from exc
            sources[key] = f"file {config}"
    for name in known:
        for var in (f"BOT_{name.upper()}", *_ENV_ALIASES.get(name, ())):
            if env.get(var, "") != "":
                try:
                    setattr(s, name, _coerce(name, getattr(s, name), env[var]))
                except (TypeError, ValueError) as exc:
                    raise SettingsError(f"{var}: {exc}") from exc
                sources[name] = f"env {var}"
                break
    if data_dir is not None:
        s.data_dir = Path(data_dir)
        sources["data_dir"] = "--data-dir"
    if s.smtp_security not in {"starttls", "ssl", "none"}:
        raise SettingsError(f"smtp_security must be starttls, ssl or none, not {s.smtp_security!r}")
    if s.imap_security not in {"starttls", "ssl", "none"}:
        raise SettingsError(f"imap_security must be ssl, starttls or none, not {s.imap_security!r}")
    if s.room_mode not in {"off", "mention", "auto"}:
        raise SettingsError(f"room_mode must be off, mention or auto, not {s.room_mode!r}")
    from bot.timefmt import zone_problem

    if zone_problem(s.timezone):
        raise SettingsError(f"timezone: {zone_problem(s.timezone)}")
    return s
