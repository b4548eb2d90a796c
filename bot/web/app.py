"""The operators' web console: a review desk for appeals, unmatched messages and the knowledge base.

Server-rendered (Starlette + Jinja2, no front-end build, nothing from a CDN). It reads and writes the
same store as the bot, with its own connection, so it runs beside `python -m bot run` or inside it
(`run --web`). A status change here does what the CLI does: recorded, and the creator told through
the outbox, which the running bot sends. A phrasing taught here goes to knowledge/learned.yaml; the
running bot sees the files change on its next tick and reloads.

Security: every page but /login (and /metrics, /healthz, /readyz for scrapers: counts and fixed
words only, bot/monitoring.py) needs a session (a signed cookie: HttpOnly, SameSite=Strict, Secure
behind TLS, 8 h); every POST carries the session's CSRF token; repeated failed logins lock the name
out; views, reveals, exports, status changes and logins are audited (who, when, what, from where),
never with personal data; media are streamed decrypted with `Cache-Control: no-store`.

Open for what: `site.py` (what every page shares: the console's parts, the login guard, the
security headers, names, times, charts), `appeals.py` (the appeals pages), `review.py` (conversation review and labels), `knowledge.py`
(unmatched messages, the knowledge base, charts, the audit log), `auth.py` (passwords, sessions,
CSRF), `serve.py` (`python -m bot web`). Here: login, logout and the app put together.
"""
from __future__ import annotations

import asyncio
import logging

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from bot import monitoring
from bot.web import appeals, auth, knowledge, review
from bot.web.site import HERE, Console, SecurityHeaders, Site

log = logging.getLogger(__name__)


def create_app(settings) -> Starlette:
    console = Console(settings)
    site = Site(settings, console)
    page, audit, source, form_checked, guarded = site.page, site.audit, site.source, site.form_checked, site.guarded

    # -- login ---------------------------------------------------------------------------
    async def login_page(request: Request):
        if request.method == "GET":
            return page(request, "login.html")
        form = await form_checked(request)
        if form is None:
            return PlainTextResponse("CSRF 校验失败,请刷新页面后重试。", status_code=403)
        name = str(form.get("username", "")).strip()[:64]
        ok, why = await asyncio.to_thread(auth.login, console.store, name, str(form.get("password", "")))
        console.store.audit(name or "-", "login" if ok else f"login_failed:{why}", None, source(request))
        if not ok:
            msg = "失败次数过多,该账号已暂时锁定,请 15 分钟后再试。" if why == "locked" else "用户名或密码不正确。"
            return page(request, "login.html", status_code=401, error=msg)
        request.session.clear()  # a new session on login
        request.session["user"] = name
        auth.csrf_token(request.session)
        return RedirectResponse("/appeals", status_code=303)

    @guarded
    async def logout(request: Request):
        audit(request, "logout")
        request.session.clear()
        return RedirectResponse("/login", status_code=303)

    async def home(request: Request):
        return RedirectResponse("/appeals" if request.session.get("user") else "/login", status_code=303)

    routes = [
        Route("/", home),
        Route("/login", login_page, methods=["GET", "POST"]),
        Route("/logout", logout, methods=["POST"]),
        # no login: Prometheus and health checks do not log in (nothing personal in them)
        *monitoring.routes(monitoring.Health(console.store, lambda: console.kb is not None)),
        *appeals.routes(site),
        *knowledge.routes(site),
        *review.routes(site),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    middleware = [Middleware(SecurityHeaders), Middleware(SessionMiddleware, secret_key=auth.session_secret(settings.data_dir),
                             session_cookie="dayu_console", max_age=auth.SESSION_HOURS * 3600,
                             same_site="strict", https_only=settings.web_secure_cookie)]
    app = Starlette(routes=routes, middleware=middleware)
    app.state.console = console
    return app
