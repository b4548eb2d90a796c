"""What every page of the console shares: the `Console` (settings, store, vault, knowledge base),
the `Site` (templates, a page, who is logged in, the audit, the login and CSRF guard), the security
headers, the names operators read, times in Beijing time, and the server-rendered bar chart."""
from __future__ import annotations

import math
from html import escape
from pathlib import Path

from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.templating import Jinja2Templates

from bot.appeals.status import STATUS_NAMES  # noqa: F401 - the pages import it from here
from bot.kb import load_knowledge
from bot.timefmt import local_minutes
from bot.web import auth

HERE = Path(__file__).resolve().parent
PAGE_SIZE = 25
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
# Every response: no script at all, nothing from elsewhere, never framed, types not sniffed.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; img-src 'self'; media-src 'self'; style-src 'self'; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer",
}


class SecurityHeaders:
    """Pure ASGI middleware adding SECURITY_HEADERS (streaming responses stay streaming)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
THREAD_NAMES = {"sent": "我们的申诉邮件", "supplement_sent": "我们的补充邮件", "reply": "平台回复", "status": "状态"}
ROUTE_NAMES = {"online": "线上反馈", "email": "邮箱/人工客服"}


class Console:
    """What the pages share: settings, the store, the vault, the knowledge base as last loaded."""

    def __init__(self, settings):
        self.settings = settings
        from bot.engine import open_key_and_store

        self.vault, self.store = open_key_and_store(settings)
        self.kb = load_knowledge(settings.knowledge_dir)

    def reload_kb(self, confirmed: bool = True):
        """Reload the knowledge files; unless `confirmed`, raise CasesBroken (keeping the old base)
        when the new one breaks a saved regression case (knowledge/learned_cases.jsonl)."""
        from bot.matching.cases import CasesBroken, broken_cases, load_cases

        old = self.kb
        new = load_knowledge(self.settings.knowledge_dir)
        broken = [] if confirmed else broken_cases(new, load_cases(self.settings.knowledge_dir))
        if broken:
            raise CasesBroken(broken)
        self.kb = new
        self.store.bump_kb_generation()  # every bot process on this store reloads on its next tick
        return old, self.kb


class Site:
    """The console and the page helpers every route uses."""

    def __init__(self, settings, console: Console):
        self.settings = settings
        self.console = console
        self.templates = Jinja2Templates(directory=str(HERE / "templates"))
        self.templates.env.globals.update(status_names=STATUS_NAMES, route_names=ROUTE_NAMES)
        self.templates.env.filters["when"] = lambda value: china_time(value, settings)
        self.templates.env.globals["faq_question"] = faq_question  # FAQ choices show the question, not the id

    def page(self, request: Request, name: str, status_code: int = 200, **context) -> Response:
        context.update(user=request.session.get("user"), csrf=auth.csrf_token(request.session), path=request.url.path)
        return self.templates.TemplateResponse(request, name, context, status_code=status_code, headers=NO_STORE)

    @staticmethod
    def who(request: Request) -> str:
        return request.session.get("user") or "-"

    @staticmethod
    def source(request: Request) -> str:
        return request.client.host if request.client else "-"

    def audit(self, request: Request, action: str, target: str | None = None) -> None:
        self.console.store.audit(self.who(request), action, target, self.source(request))

    @staticmethod
    async def form_checked(request: Request):
        form = await request.form()
        if not auth.csrf_ok(request.session, form.get("csrf")):
            return None
        return form

    def guarded(self, handler):
        """No session: to /login (GET or POST). POST without the session's CSRF token: 403."""
        async def wrapper(request: Request):
            if not request.session.get("user"):
                return RedirectResponse("/login", status_code=303)
            if request.method == "POST":
                form = await self.form_checked(request)
                if form is None:
                    return PlainTextResponse("CSRF 校验失败,请刷新页面后重试。", status_code=403)
                request.state.form = form
            return await handler(request)
        return wrapper


def faq_question(entry) -> str:
    """An FAQ entry as operators recognise it: its first phrasing (a question), else its first cue."""
    first = (entry.phrasings or entry.cues or (entry.id,))[0]
    return first.replace("{item}", "某项")


def kb_diff(old, new) -> str:
    d = old.diff(new)

    def ids(xs):
        return "、".join(map(str, xs)) if xs else "无"
    return (f"版本 {old.version} -> {new.version};提示语新增 {ids(d['added'])},删除 {ids(d['removed'])},"
            f"修改 {ids(d['changed'])};FAQ 修改 {ids(d['faq_changed'])}")


def china_time(value: str | None, settings=None) -> str:
    """An ISO time as creators and operators read it: the display timezone (setting `timezone`),
    to the minute."""
    return local_minutes(value, settings) or "-"


def bar_chart(pairs: list[tuple[str, int]], width: int = 640, bar_h: int = 22) -> Markup:
    """A horizontal bar chart as inline SVG, rendered on the server (no script)."""
    if not pairs:
        return Markup('<p class="muted">暂无数据</p>')
    top = max(n for _, n in pairs) or 1
    label_w, gap = 110, 6
    height = len(pairs) * (bar_h + gap) + gap
    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" xmlns="http://www.w3.org/2000/svg">']
    for i, (label, n) in enumerate(pairs):
        y = gap + i * (bar_h + gap)
        w = 0 if n == 0 else max(2, math.floor((width - label_w - 60) * n / top))
        parts.append(f'<text x="{label_w - 8}" y="{y + bar_h * 0.7:.0f}" text-anchor="end">{escape(str(label))}</text>'
                     f'<rect x="{label_w}" y="{y}" width="{w}" height="{bar_h}" rx="3"></rect>'
                     f'<text x="{label_w + w + 6}" y="{y + bar_h * 0.7:.0f}">{n}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
