"""The appeals pages: the list (by status, paged), one appeal (its items, history and email thread;
the ID number revealed on request, audited), an operator's status change (the creator told through
the outbox), its files streamed decrypted, and the package exported as a zip."""
from __future__ import annotations

import asyncio
import io
import tempfile
import zipfile
from pathlib import Path

from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from bot.appeals.crypto import VaultError
from bot.appeals.package import APPEAL_ID_RE, PackageError, export_appeal, read_appeal, read_package_file
from bot.appeals.status import StatusError, change_status
from bot.dialog.validators import mask_id_number
from bot.store import OPERATOR_STATUSES
from bot.web.site import NO_STORE, PAGE_SIZE, STATUS_NAMES, THREAD_NAMES, Site


def routes(site: Site) -> list[Route]:
    console, settings, page, audit, who, guarded = (site.console, site.settings, site.page, site.audit, site.who,
                                                    site.guarded)

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
        suggested = console.store.suggested_status(appeal_id)
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

    return [
        Route("/appeals", appeals),
        Route("/appeals/{appeal_id}", appeal),
        Route("/appeals/{appeal_id}/reveal", reveal, methods=["POST"]),
        Route("/appeals/{appeal_id}/status", set_status, methods=["POST"]),
        Route("/appeals/{appeal_id}/files/{slot}", media),
        Route("/appeals/{appeal_id}/export.zip", export_zip),
    ]
