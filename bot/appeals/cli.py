"""`python -m bot appeals list|export|status`: the operator's view of appeals and their statuses."""
from __future__ import annotations

import json
import sys

from bot.appeals.crypto import VaultError
from bot.appeals.package import PackageError, export_appeal, list_appeals


def appeals_command(settings, args) -> int:
    from bot.engine import open_key_and_store

    # a package written with another key is reported per package (exit 1), so no key check here;
    # StartupError (no key, no store) is one line, printed by bot.cli
    vault, store = open_key_and_store(settings, check_key=False)
    try:
        if args.appeals_command == "list":
            return _list(settings, vault, store, args)
        if args.appeals_command == "status":
            return _status(settings, store, args)
        if args.appeals_command == "show":
            return _show(settings, store, args)
        try:
            out = export_appeal(settings, vault, args.appeal_id, args.out, area=store.files)
        except (PackageError, VaultError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    finally:
        store.close()
    print(f"exported {args.appeal_id} to {out}")
    return 0


def _list(settings, vault, store, args) -> int:
    """Packages joined with their status in the store; identity masked."""
    statuses = {a["appeal_id"]: a for a in store.appeals(limit=100_000)}
    rows = []
    for r in list_appeals(settings, vault, area=store.files):
        a = statuses.get(r["appeal_id"], {})
        rows.append({**r, "status": a.get("status") or r.get("status"),
                     "status_at": a.get("status_at"), "note": a.get("note"),
                     # what the platform's latest reply suggests (never applied by itself)
                     "suggested": store.suggested_status(r["appeal_id"]) if a.get("status") == "replied" else None})
    if args.status:
        rows = [r for r in rows if r["status"] == args.status]
    if args.json:
        print(json.dumps(rows, ensure_ascii=False, indent=1))
        return 0
    if not rows:
        print("no appeal packages" + (f" with status {args.status}" if args.status else ""))
        return 0
    from bot.timefmt import local_minutes

    print(f"{'appeal_id':<22} {'route':<6} {'prompt':>6} {'status':<10} {'suggests':<10} {'name':<5} "
          f"{'id_number':<18} confirmed_at")
    for r in rows:
        print(f"{r['appeal_id']:<22} {r.get('route') or '-':<6} {r.get('prompt_id') or '-':>6} "
              f"{r.get('status') or '-':<10} {r.get('suggested') or '-':<10} {r.get('masked_name') or '-':<5} "
              f"{r.get('masked_id_number') or '-':<18} "
              f"{local_minutes(r.get('confirmed_at') or r.get('created_at'), settings)}")
    return 0


def _status(settings, store, args) -> int:
    from bot.appeals.status import StatusError, change_status
    from bot.kb import KnowledgeError, load_knowledge

    try:
        kb = load_knowledge(settings.knowledge_dir)
    except KnowledgeError as exc:
        print(f"knowledge base error: {exc}", file=sys.stderr)
        return 2
    try:
        a = change_status(settings, store, kb, args.appeal_id, args.status, by=f"cli:{args.by}", note=args.note,
                          items=args.items)
    except StatusError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{a['appeal_id']}: {a['status']}" + (f" ({a['note']})" if a.get("note") else "")
          + " - the creator is told by the running bot")
    return 0


def _show(settings, store, args) -> int:
    from bot.appeals.status import thread_events
    from bot.timefmt import local_minutes

    appeal = store.appeal(args.appeal_id)
    if appeal is None:
        print(f"error: no appeal {args.appeal_id}", file=sys.stderr)
        return 1
    print(f"{appeal['appeal_id']}  route {appeal['route']}  prompt {appeal.get('prompt_id') or '-'}  "
          f"status {appeal['status']}  {appeal['masked_identity']}")
    words = {"sent": "our email", "supplement_sent": "our follow-up", "reply": "platform reply", "status": "status"}
    for e in thread_events(store, args.appeal_id):
        head = f"{local_minutes(e['at'], settings)}  {words.get(e['kind'], e['kind']):<15}"
        if e["kind"] == "status":
            print(f"{head} {e['status']} ({e['by']})" + (f": {e['text']}" if e["text"] else ""))
        else:
            extra = f" [suggests {e['status']}]" if e["status"] else ""
            print(f"{head} {e.get('message_id') or ''}{extra}")
            for line in (e["text"] or "").splitlines():
                print(f"{'':17}   {line}")
    return 0
