"""`python -m bot web` (serve, adduser, passwd, deluser) and the console inside `run --web`."""
from __future__ import annotations

import asyncio
import ipaddress
import sys

from bot.web import auth


def check_listen(settings, host: str) -> str | None:
    """Only loopback unless `web_allow_remote` (and then behind a TLS reverse proxy, see docs/web.md)."""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback and not settings.web_allow_remote:
        return (f"refusing to listen on {host}: the console binds 127.0.0.1 unless web_allow_remote = true "
                "(put it behind a TLS reverse proxy, see docs/web.md)")
    return None


def _store(settings):
    from bot.engine import open_key_and_store

    return open_key_and_store(settings, check_key=False)[1]  # operators' accounts hold no encrypted data


def web_command(settings, args) -> int:
    if args.web_command in ("adduser", "passwd", "deluser"):
        store = _store(settings)
        try:
            if args.web_command == "deluser":
                ok = store.delete_web_user(args.name)
                print(f"removed {args.name}" if ok else f"no operator {args.name}")
                return 0 if ok else 1
            exists = store.web_user(args.name) is not None
            if args.web_command == "adduser" and exists:
                print(f"operator {args.name} exists; use passwd", file=sys.stderr)
                return 1
            if args.web_command == "passwd" and not exists:
                print(f"no operator {args.name}", file=sys.stderr)
                return 1
            try:
                auth.set_password(store, args.name, sys.stdin.readline())
            except auth.PasswordError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            print(f"{'added' if args.web_command == 'adduser' else 'changed the password of'} {args.name}")
            return 0
        finally:
            store.close()
    host = args.host or settings.web_host
    port = args.port or settings.web_port
    problem = check_listen(settings, host)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    return asyncio.run(serve_console(settings, host, port))


def make_server(settings, host: str, port: int):
    import uvicorn

    from bot.web.app import create_app

    config = uvicorn.Config(create_app(settings), host=host, port=port, log_level="warning",
                            access_log=False, proxy_headers=False, server_header=False)
    return uvicorn.Server(config)


async def serve_console(settings, host: str, port: int) -> int:
    server = make_server(settings, host, port)
    print(f"web console on http://{host}:{port}/ (Ctrl-C to stop)", flush=True)
    await server.serve()
    return 0
