"""The operators' web console: a review desk for appeals, unmatched messages and the knowledge base.

Server-rendered (Starlette + Jinja2, no front-end build, nothing from a CDN). It reads and writes the
same store as the bot, with its own connection, so it runs beside `python -m bot run` or inside it
(`run --web`). A status change here does what the CLI does: recorded, and the creator told through
the outbox, which the running bot sends. A phrasing taught here goes to knowledge/learned.yaml; the
running bot sees the files change on its next tick and reloads.

Security: every page but /login needs a session (a signed cookie: HttpOnly, SameSite=Strict, Secure
behind TLS, 8 h); every POST carries the session's CSRF token; repeated failed logins lock the name
out; views, reveals, exports, status changes and logins are audited (who, when, what, from where),
never with personal data; media are streamed decrypted with `Cache-Control: no-store`.
"""
from __future__ import annotations

import asyncio
import io
import logging
import math
import tempfile
import zipfile
from datetime import datetime, timedelta, timezone
from html import escape
from pathlib import Path

from markupsafe import Markup
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from bot.admin.commands import unmatched_label
from bot.appeals.crypto import VaultError
from bot.appeals.package import APPEAL_ID_RE, PackageError, export_appeal, read_appeal, read_package_file
from bot.appeals.status import StatusError, change_status
from bot.dialog.validators import mask_id_number
from bot.kb import KnowledgeError, load_knowledge
from bot.kb.learned import add_phrasing
from bot.store import OPERATOR_STATUSES
from bot.web import auth

log = logging.getLogger(__name__)

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
STATUS_NAMES = {"ready": "待提交", "queued": "发送中", "sent": "已发送", "failed": "发送失败", "replied": "平台已回复",
                "reviewing": "审核中", "resolved": "已通过", "rejected": "未通过", "need_more": "需补充"}
THREAD_NAMES = {"sent": "我们的申诉邮件", "supplement_sent": "我们的补充邮件", "reply": "平台回复", "status": "状态"}
ROUTE_NAMES = {"online": "线上反馈", "email": "邮箱/人工客服"}


class Console:
    """What the pages share: settings, the store, the vault, the knowledge base as last loaded."""

    def __init__(self, settings):
        self.settings = settings
        from bot.engine import open_key_and_store

        self.vault, self.store = open_key_and_store(settings)
        self.kb = load_knowledge(settings.knowledge_dir)

    def reload_kb(self):
        old = self.kb
        self.kb = load_knowledge(self.settings.knowledge_dir)
        self.store.bump_kb_generation()  # every bot process on this store reloads on its next tick
        return old, self.kb


def create_app(settings) -> Starlette:
    console = Console(settings)
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.globals.update(status_names=STATUS_NAMES, route_names=ROUTE_NAMES)
    templates.env.filters["when"] = china_time

    def page(request: Request, name: str, status_code: int = 200, **context) -> Response:
        context.update(user=request.session.get("user"), csrf=auth.csrf_token(request.session), path=request.url.path)
        return templates.TemplateResponse(request, name, context, status_code=status_code, headers=NO_STORE)

    def who(request: Request) -> str:
        return request.session.get("user") or "-"

    def source(request: Request) -> str:
        return request.client.host if request.client else "-"

    def audit(request: Request, action: str, target: str | None = None) -> None:
        console.store.audit(who(request), action, target, source(request))

    async def form_checked(request: Request):
        form = await request.form()
        if not auth.csrf_ok(request.session, form.get("csrf")):
            return None
        return form

    def guarded(handler):
        """No session: to /login (GET or POST). POST without the session's CSRF token: 403."""
        async def wrapper(request: Request):
            if not request.session.get("user"):
                return RedirectResponse("/login", status_code=303)
            if request.method == "POST":
                form = await form_checked(request)
                if form is None:
                    return PlainTextResponse("CSRF 校验失败,请刷新页面后重试。", status_code=403)
                request.state.form = form
            return await handler(request)
        return wrapper

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

    # -- appeals -------------------------------------------------------------------------
    @guarded
    async def appeals(request: Request):
        status = request.query_params.get("status") or None
        if status not in (None, *STATUS_NAMES):
            status = None
        try:
            pageno = max(1, int(request.query_params.get("page", "1")))
        except ValueError:
            pageno = 1
        rows = console.store.appeals(limit=PAGE_SIZE + 1, offset=(pageno - 1) * PAGE_SIZE, status=status)
        return page(request, "appeals.html", rows=rows[:PAGE_SIZE], status=status, pageno=pageno,
                    more=len(rows) > PAGE_SIZE, statuses=STATUS_NAMES)

    def _appeal_or_404(appeal_id: str):
        if not APPEAL_ID_RE.match(appeal_id):
            return None, None
        row = console.store.appeal(appeal_id)
        try:
            meta = read_appeal(settings, console.vault, appeal_id, area=console.store.files)
        except (PackageError, VaultError):
            meta = None
        return row, meta

    def _items(meta: dict, reveal: bool) -> list[dict]:
        attachments = {a["slot"]: a for a in meta.get("attachments") or []}
        slots = meta.get("slots") or {}
        items = []
        for m in meta.get("materials") or []:
            slot = m["slot"]
            item = {"slot": slot, "label": m["label"], "kind": "text", "value": slots.get(slot)}
            if slot in attachments:
                a = attachments[slot]
                item.update(kind=a["mime"].split("/")[0], mime=a["mime"], size=a.get("size"))
            elif slot == "id_number" and item["value"]:
                item.update(kind="id_number", masked=mask_id_number(item["value"]),
                            value=item["value"] if reveal else None)
            items.append(item)
        return items

    async def _detail(request: Request, appeal_id: str, reveal: bool = False, message: str = ""):
        row, meta = _appeal_or_404(appeal_id)
        if row is None and meta is None:
            return page(request, "missing.html", status_code=404, appeal_id=appeal_id)
        audit(request, "reveal_id_number" if reveal else "view_appeal", appeal_id)
        from bot.appeals.status import thread_events

        route = (row or meta or {}).get("route")
        materials = console.kb.routes[route].materials if route in console.kb.routes else []
        suggested = console.store.suggested_status(appeal_id) if hasattr(console.store, "suggested_status") else None
        return page(request, "appeal.html", appeal_id=appeal_id, row=row, meta=meta,
                    items=_items(meta, reveal) if meta else [], history=console.store.appeal_history(appeal_id),
                    operator_statuses=OPERATOR_STATUSES, message=message, materials=materials,
                    thread=thread_events(console.store, appeal_id), thread_names=THREAD_NAMES,
                    suggested=suggested if suggested in OPERATOR_STATUSES else None)

    @guarded
    async def appeal(request: Request):
        return await _detail(request, request.path_params["appeal_id"])

    @guarded
    async def reveal(request: Request):
        return await _detail(request, request.path_params["appeal_id"], reveal=True)

    @guarded
    async def set_status(request: Request):
        appeal_id = request.path_params["appeal_id"]
        form = request.state.form
        try:
            change_status(settings, console.store, console.kb, appeal_id, str(form.get("status", "")),
                          by=f"web:{who(request)}", note=str(form.get("note", ""))[:500],
                          items=[str(x) for x in form.getlist("items")] or None)
        except StatusError as exc:
            return await _detail(request, appeal_id, message=f"未能修改状态:{exc}")
        audit(request, f"status:{form.get('status')}", appeal_id)
        return RedirectResponse(f"/appeals/{appeal_id}", status_code=303)

    @guarded
    async def media(request: Request):
        appeal_id, slot = request.path_params["appeal_id"], request.path_params["slot"]
        row, meta = _appeal_or_404(appeal_id)
        att = next((a for a in (meta or {}).get("attachments") or [] if a["slot"] == slot), None)
        if att is None:
            return PlainTextResponse("not found", status_code=404)
        audit(request, "view_file", f"{appeal_id}/{slot}")
        # Fernet decrypts whole files
        data = await asyncio.to_thread(read_package_file, settings, console.vault, appeal_id,
                                       Path(att["stored"]).name, console.store.files)

        async def chunks():
            for i in range(0, len(data), 256 * 1024):
                yield data[i:i + 256 * 1024]

        return StreamingResponse(chunks(), media_type=att["mime"],
                                 headers={**NO_STORE, "Content-Length": str(len(data)),
                                          "Content-Disposition": f'inline; filename="{att["name"]}"'})

    @guarded
    async def export_zip(request: Request):
        appeal_id = request.path_params["appeal_id"]
        if not APPEAL_ID_RE.match(appeal_id):
            return PlainTextResponse("not found", status_code=404)

        def build() -> bytes:
            with tempfile.TemporaryDirectory() as d:
                out = export_appeal(settings, console.vault, appeal_id, Path(d) / appeal_id, area=console.store.files)
                buf = io.BytesIO()
                with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
                    for f in sorted(out.iterdir()):
                        z.write(f, f"{appeal_id}/{f.name}")
                return buf.getvalue()

        try:
            data = await asyncio.to_thread(build)
        except (PackageError, VaultError):
            return PlainTextResponse("not found", status_code=404)
        audit(request, "export", appeal_id)
        return Response(data, media_type="application/zip",
                        headers={**NO_STORE, "Content-Disposition": f'attachment; filename="{appeal_id}.zip"'})

    # -- audit, unmatched, stats, kb ------------------------------------------------------------
    @guarded
    async def audit_page(request: Request):
        return page(request, "audit.html", rows=console.store.audit_log(limit=300))

    @guarded
    async def unmatched(request: Request):
        return await unmatched_with(request, request.query_params.get("m", ""))

    @guarded
    async def unmatched_action(request: Request):
        form = request.state.form
        text, action = str(form.get("text", "")), str(form.get("action", ""))
        # which row: idle (state "idle" or none) or not understood while waiting (state, awaiting)
        state, awaiting = str(form.get("state", "") or "idle"), str(form.get("awaiting", ""))
        if action == "dismiss":
            console.store.dismiss_unmatched(text, state, awaiting)
            audit(request, "unmatched_dismiss")
            return RedirectResponse("/unmatched", status_code=303)
        kind, target = ("prompt", form.get("prompt_id")) if action == "prompt" else ("faq", form.get("faq_id"))
        if not target:
            return RedirectResponse("/unmatched", status_code=303)
        try:
            old = console.kb
            console.kb = await asyncio.to_thread(add_phrasing, settings.knowledge_dir, kind, target, text)
        except (KnowledgeError, ValueError) as exc:
            return await unmatched_with(request, f"未能加入:{exc}")
        console.store.dismiss_unmatched(text, state, awaiting)
        audit(request, f"learned_{kind}", str(target))
        diff = _diff(old, console.kb)
        return await unmatched_with(request, f"已加入{'提示语 ' + str(target) if kind == 'prompt' else 'FAQ ' + str(target)}"
                                             f"的说法,知识库已重载:{diff}。运行中的机器人会在下一次检查时自动重载。")

    async def unmatched_with(request: Request, message: str):
        since = datetime.now(timezone.utc) - timedelta(days=30)
        rows = [{**r, "label": unmatched_label(console.kb, r)} for r in console.store.top_unmatched_all(since, limit=50)]
        return page(request, "unmatched.html", rows=rows, prompts=console.kb.prompts, faq=console.kb.faq,
                    message=message)

    @guarded
    async def stats(request: Request):
        now = datetime.now(timezone.utc)
        per_day = dict(console.store.messages_per_day(now - timedelta(days=13)))
        days = [(now - timedelta(days=i)).date().isoformat() for i in range(13, -1, -1)]
        charts = [
            ("每天的消息数(近 14 天)", bar_chart([(d[5:], per_day.get(d, 0)) for d in days])),
            ("各提示语的识别次数", bar_chart([(f"#{p}", n) for p, n in console.store.match_counts().items()])),
            ("各状态的申诉数", bar_chart([(STATUS_NAMES.get(s, s), n)
                                          for s, n in sorted(console.store.appeals_per_status().items())])),
        ]
        return page(request, "stats.html", charts=charts, counts=console.store.event_counts())

    @guarded
    async def kb_page(request: Request):
        return page(request, "kb.html", kb=console.kb, result=None)

    @guarded
    async def kb_reload(request: Request):
        try:
            old, new = await asyncio.to_thread(console.reload_kb)
        except KnowledgeError as exc:
            audit(request, "kb_reload_failed")
            where = f"{exc.file}" + (f" 第 {exc.line} 行" if exc.line else "")
            return page(request, "kb.html", kb=console.kb, result={"ok": False, "text": f"{where}:{exc.reason}"})
        audit(request, "kb_reload")
        return page(request, "kb.html", kb=new, result={"ok": True, "text": _diff(old, new)})

    async def home(request: Request):
        return RedirectResponse("/appeals" if request.session.get("user") else "/login", status_code=303)

    routes = [
        Route("/", home),
        Route("/login", login_page, methods=["GET", "POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/appeals", appeals),
        Route("/appeals/{appeal_id}", appeal),
        Route("/appeals/{appeal_id}/reveal", reveal, methods=["POST"]),
        Route("/appeals/{appeal_id}/status", set_status, methods=["POST"]),
        Route("/appeals/{appeal_id}/files/{slot}", media),
        Route("/appeals/{appeal_id}/export.zip", export_zip),
        Route("/audit", audit_page),
        Route("/unmatched", unmatched),
        Route("/unmatched/action", unmatched_action, methods=["POST"]),
        Route("/stats", stats),
        Route("/kb", kb_page),
        Route("/kb/reload", kb_reload, methods=["POST"]),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    middleware = [Middleware(SecurityHeaders), Middleware(SessionMiddleware, secret_key=auth.session_secret(settings.data_dir),
                             session_cookie="dayu_console", max_age=auth.SESSION_HOURS * 3600,
                             same_site="strict", https_only=settings.web_secure_cookie)]
    app = Starlette(routes=routes, middleware=middleware)
    app.state.console = console
    return app


def _diff(old, new) -> str:
    d = old.diff(new)

    def ids(xs):
        return "、".join(map(str, xs)) if xs else "无"
    return (f"版本 {old.version} -> {new.version};提示语新增 {ids(d['added'])},删除 {ids(d['removed'])},"
            f"修改 {ids(d['changed'])};FAQ 修改 {ids(d['faq_changed'])}")


CHINA = timezone(timedelta(hours=8))


def china_time(value: str | None) -> str:
    """An ISO time as creators and operators read it: Beijing time, to the minute."""
    if not value:
        return "-"
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        return value
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return t.astimezone(CHINA).strftime("%Y-%m-%d %H:%M")


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
