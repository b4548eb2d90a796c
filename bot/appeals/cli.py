"""`python -m bot appeals list|export`: the operator's view of appeal packages."""
from __future__ import annotations

import sys

from bot.appeals.crypto import Vault, VaultError, load_or_create_key
from bot.appeals.package import PackageError, export_appeal, list_appeals


def appeals_command(settings, args) -> int:
    try:
        vault = Vault(load_or_create_key(settings))
    except VaultError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.appeals_command == "list":
        rows = list_appeals(settings, vault)
        if not rows:
            print("no appeal packages")
        for r in rows:
            print(f"{r['appeal_id']}  {r.get('route', '-'):6}  prompt {r.get('prompt_id', '-')}  "
                  f"{r.get('status', '-')}  {r.get('masked_name') or '-'}  {r.get('masked_id_number') or '-'}  "
                  f"{r.get('confirmed_at') or r.get('created_at') or ''}")
        return 0
    try:
        out = export_appeal(settings, vault, args.appeal_id, args.out)
    except (PackageError, VaultError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"exported {args.appeal_id} to {out}")
    return 0
