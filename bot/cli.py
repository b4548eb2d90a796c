"""Command line: `python -m bot {chat,config,match,kb,replay,run,web,db,appeals,stats}`."""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

from bot.settings import SettingsError, load_settings


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="TOML settings file")
    p.add_argument("--data-dir", type=Path, help="data directory (overrides settings)")


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, not {text}")
    return value


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m bot", description="大鱼号实名认证失败 support bot")
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("chat", help="interactive console chat (one user, DM)")
    _add_common(p)
    p.add_argument("--user", default="console-user", help="sender id used in the console")
    p.add_argument("--others", choices=["show", "hide"], default="show",
                   help="replies for other recipients (an admin's handoff note, ...): shown as [to ID] or hidden")
    p.add_argument("--tick-seconds", type=_positive, default=2.0,
                   help="how often reminders, the email queue, status notes and IMAP are looked at while waiting")
    p.add_argument("--verbose", action="store_true", help="log at log_level (default: warnings only) on stderr")

    p = sub.add_parser("config", help="print the effective settings (secrets masked) and where each came from")
    _add_common(p)
    p.add_argument("--json", action="store_true", help="one JSON array instead of a table")

    p = sub.add_parser("match", help="match messages from stdin, print one JSON line each")
    _add_common(p)
    p.add_argument("--jsonl", action="store_true", help='input lines are JSON objects {"text": ...}')

    kb = sub.add_parser("kb", help="knowledge base tools")
    kb_sub = kb.add_subparsers(dest="kb_command", required=True)
    p = kb_sub.add_parser("check", help="validate a knowledge file or dir")
    _add_common(p)
    p.add_argument("path", nargs="?", type=Path)
    p = kb_sub.add_parser("test", help="replay the saved regression cases (learned_cases.jsonl) against the knowledge")
    _add_common(p)
    p.add_argument("path", nargs="?", type=Path)

    p = sub.add_parser("replay", help="feed a JSONL event script, print one JSON line per reply")
    _add_common(p)
    p.add_argument("script", help="JSONL file, or - for stdin (live)")

    p = sub.add_parser("run", help="connect to WeChat through a Wechaty puppet-service gateway")
    _add_common(p)
    p.add_argument("--web", action="store_true", help="also serve the operators' web console")

    web = sub.add_parser("web", help="the operators' web console (and its users)")
    _add_common(web)
    web.add_argument("--host", help="address to listen on (default: setting web_host, 127.0.0.1)")
    web.add_argument("--port", type=int, help="port (default: setting web_port, 8080)")
    w_sub = web.add_subparsers(dest="web_command")
    for name, text in (("adduser", "add an operator"), ("passwd", "change an operator's password"),
                       ("deluser", "remove an operator")):
        p = w_sub.add_parser(name, help=text)
        _add_common(p)
        p.add_argument("name")
        if name != "deluser":
            p.add_argument("--password-stdin", action="store_true", required=True,
                           help="read the password from standard input (never from the command line)")

    db = sub.add_parser("db", help="the store")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    p = db_sub.add_parser("migrate", help="apply pending schema versions (also done at every start)")
    _add_common(p)
    p = db_sub.add_parser("copy", help="copy every row and file to another, empty store "
                                       "(e.g. sqlite:///… to postgresql://…); encrypted data stays encrypted")
    _add_common(p)
    p.add_argument("--from", dest="source", required=True, metavar="URL", help="sqlite:///path or postgresql://…")
    p.add_argument("--to", dest="target", required=True, metavar="URL", help="sqlite:///path or postgresql://…")

    ap_ = sub.add_parser("appeals", help="appeal packages")
    a_sub = ap_.add_subparsers(dest="appeals_command", required=True)
    p = a_sub.add_parser("list", help="list appeal packages with their status (identity masked)")
    _add_common(p)
    p.add_argument("--status", help="only appeals with this status (ready, queued, sent, failed, reviewing, ...)")
    p.add_argument("--json", action="store_true", help="one JSON array instead of a table")
    p = a_sub.add_parser("status", help="set an operator status; the creator is told in their DM")
    _add_common(p)
    p.add_argument("appeal_id")
    p.add_argument("status", choices=["reviewing", "resolved", "rejected", "need_more"])
    p.add_argument("--note", help="shown to the creator and kept in the history")
    p.add_argument("--items", help="need_more: the items to send again (slot names, labels or their numbers, "
                                   "comma-separated); omitted: the creator is asked which")
    p.add_argument("--by", default=os.environ.get("USER", "operator"), help="who (kept in the history)")
    p = a_sub.add_parser("show", help="one appeal's thread: our emails, the platform's replies, supplements, statuses")
    _add_common(p)
    p.add_argument("appeal_id")
    p = a_sub.add_parser("export", help="write a decrypted copy of a package")
    _add_common(p)
    p.add_argument("appeal_id")
    p.add_argument("--out", type=Path, required=True)

    p = sub.add_parser("stats", help="the appeal funnel, per prompt group and in total")
    _add_common(p)
    p.add_argument("--json", action="store_true", help="one JSON object instead of text")
    p.add_argument("--since", metavar="YYYY-MM-DD", help="attempts that began on or after this day")
    p.add_argument("--until", metavar="YYYY-MM-DD", help="attempts that began on or before this day")
    return ap


def _cmd_match(settings, args) -> int:
    from bot.kb import KnowledgeError, load_knowledge
    from bot.matching import Matcher

    try:
        matcher = Matcher(load_knowledge(settings.knowledge_dir))
    except KnowledgeError as exc:
        print(f"knowledge base error: {exc}", file=sys.stderr)
        return 2
    out = sys.stdout
    for lineno, line in enumerate(sys.stdin, 1):
        line = line.rstrip("\r\n")
        if args.jsonl:
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                text = obj["text"] if isinstance(obj, dict) else None
            except (json.JSONDecodeError, KeyError):
                text = None
            if not isinstance(text, str):
                print(f"line {lineno}: expected a JSON object with a string \"text\"", file=sys.stderr)
                out.write(json.dumps({"text": None, "id": None, "group": None, "tier": "none",
                                      "score": 0.0, "alternatives": [], "vague": False, "error": "bad input line"},
                                     ensure_ascii=False) + "\n")
                continue
        else:
            text = line
        out.write(json.dumps(matcher.match(text).as_json(), ensure_ascii=False) + "\n")
        out.flush()
    return 0


def _cmd_kb_check(settings, args) -> int:
    from bot.kb import KnowledgeError, load_knowledge

    path = args.path or settings.knowledge_dir
    try:
        kb = load_knowledge(path)
    except KnowledgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    appeal_ids = [p.id for p in kb.prompts if kb.groups[p.group].appeal]
    print(f"ok: {path}: version {kb.version}; {len(kb.prompts)} prompts in {len(kb.groups)} groups; "
          f"appeal routes: {', '.join(f'{r.name} ({len(r.materials)} items)' for r in kb.routes.values())}; "
          f"prompts leading to an appeal: {appeal_ids}")
    return 0


def _cmd_kb_test(settings, args) -> int:
    """Every saved case against the knowledge: the ones that no longer hold, and exit 1."""
    from bot.kb import KnowledgeError, load_knowledge
    from bot.matching.cases import broken_cases, cases_path, load_cases, report

    path = args.path or settings.knowledge_dir
    try:
        kb = load_knowledge(path)
        cases = load_cases(path)
    except (KnowledgeError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    broken = broken_cases(kb, cases)
    if broken:
        print(report(broken))
        print(f"{len(broken)} of {len(cases)} cases in {cases_path(path)} no longer hold", file=sys.stderr)
        return 1
    print(f"ok: {len(cases)} cases in {cases_path(path)} hold (knowledge version {kb.version})")
    return 0


def _cmd_db(settings, args) -> int:
    from bot.appeals.crypto import Vault, load_or_create_key
    from bot.engine import open_key_and_store
    from bot.store.sqlite import SCHEMA_VERSION

    if args.db_command == "copy":
        return _cmd_db_copy(settings, Vault(load_or_create_key(settings)), args)
    _, store = open_key_and_store(settings)
    try:
        applied = store.migrations_applied
        print(f"{store.describe()}: schema version {store.schema_version()} of {SCHEMA_VERSION}; "
              + (f"applied {', '.join(map(str, applied))}" if applied else "up to date"))
    finally:
        store.close()
    return 0


def _cmd_db_copy(settings, vault, args) -> int:
    from pathlib import Path

    from bot.store import KeyMismatch, StoreUrlError, open_url
    from bot.store.copy import CopyError, copy_store

    stores = []
    try:
        for url in (args.source, args.target):
            if url.startswith("sqlite:///") and url == args.source and not Path(url[10:]).expanduser().is_file():
                print(f"error: no SQLite file at {url[10:]}", file=sys.stderr)
                return 2
            # SQLite's files live beside its database file (the data dir's layout)
            stores.append(open_url(url, vault, account=settings.account))
        src, dst = stores
        src.check_key()  # the data must be readable with the key the target will be used with
        counts = copy_store(src, dst)
    except (StoreUrlError, CopyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyMismatch:
        print("error: the configured key is not the one the source was written with; "
              "copy with the source's key (BOT_APPEAL_KEY or key_file)", file=sys.stderr)
        return 2
    finally:
        for s in stores:
            s.close()
    print(f"copied {src.describe()} -> {dst.describe()}: "
          + ", ".join(f"{k} {v}" for k, v in counts.items() if v))
    return 0


def main(argv: list[str] | None = None) -> int:
    from bot.config_report import config_command, unknown_env_warnings

    args = _parser().parse_args(argv)
    sources: dict[str, str] = {}
    try:
        settings = load_settings(args.config, args.data_dir, sources=sources)
    except SettingsError as exc:
        print(f"settings error: {exc}", file=sys.stderr)
        return 2
    for warning in unknown_env_warnings(os.environ):
        print(warning, file=sys.stderr)
    if args.command == "config":
        return config_command(settings, sources, args.json)
    from bot.privacy import setup_logging

    setup_logging(settings.log_level)
    if args.command == "match":
        return _cmd_match(settings, args)
    if args.command == "kb":
        return _cmd_kb_test(settings, args) if args.kb_command == "test" else _cmd_kb_check(settings, args)
    if args.command in ("chat", "replay", "run"):
        from bot.appeals.crypto import AppealKeyError
        from bot.engine import StartupError
        from bot.kb import KnowledgeError

        try:
            if args.command == "chat":
                from bot.transport.console import run_console
                from bot.transport.screen import Screen, route_logs

                screen = Screen()
                route_logs(screen, args.verbose, settings.log_level, settings)
                try:
                    return asyncio.run(run_console(settings, args.user, others=args.others,
                                                   tick_seconds=args.tick_seconds, screen=screen))
                except KeyboardInterrupt:  # Ctrl-C: leave like /quit, without a traceback
                    print(file=sys.stderr)
                    return 130
            if args.command == "replay":
                from bot.transport.replay import run_replay

                return asyncio.run(run_replay(settings, args.script))
            from bot.transport.wechaty_adapter import run_wechat

            if args.web:
                from bot.web.serve import check_listen

                problem = check_listen(settings, settings.web_host)
                if problem:
                    print(problem, file=sys.stderr)
                    return 2
            return asyncio.run(run_wechat(settings, web=args.web))
        except KnowledgeError as exc:  # the bot never starts on a half-loaded base
            print(f"knowledge base error, not starting: {exc}", file=sys.stderr)
            return 2
        except (StartupError, AppealKeyError) as exc:  # a wrong or invalid key: one line, no traceback
            print(f"not starting: {exc}", file=sys.stderr)
            return 2
    from bot.appeals.crypto import AppealKeyError
    from bot.engine import StartupError

    try:  # commands on the store: a wrong key or an unreachable store is one line, no traceback
        if args.command == "db":
            return _cmd_db(settings, args)
        if args.command == "web":
            from bot.web.serve import web_command

            return web_command(settings, args)
        if args.command == "appeals":
            from bot.appeals.cli import appeals_command

            return appeals_command(settings, args)
        if args.command == "stats":
            from bot.stats.cli import stats_command

            return stats_command(settings, args)
    except (StartupError, AppealKeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 2
