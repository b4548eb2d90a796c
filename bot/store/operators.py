"""The store's queries for operators: counters and charts, unmatched and not-understood messages,
the web console's users and audit log, room modes. No personal data in any of them. A mixin of
`SqlStore` (it runs on the backend's `_query`/`_exec`)."""
from __future__ import annotations

from datetime import datetime, timezone

from bot.store.records import _iso


class OperatorQueries:
    """What operators read and set: counters, unmatched messages, the console's users and audit log, room modes (a mixin of `SqlStore`)."""

    # -- stats -----------------------------------------------------------------------------------
    def event_counts(self, since: datetime | None = None) -> dict[str, int]:
        sql, args = "SELECT kind, COUNT(*) FROM events", ()
        if since is not None:
            sql, args = sql + " WHERE at >= ?", (_iso(since),)
        return dict(self._query(sql + " GROUP BY kind", args))

    def match_counts(self, since: datetime | None = None) -> dict[int, int]:
        sql, args = "SELECT prompt_id, COUNT(*) FROM events WHERE kind = 'match'", ()
        if since is not None:
            sql, args = sql + " AND at >= ?", (_iso(since),)
        return dict(self._query(sql + " GROUP BY prompt_id ORDER BY prompt_id", args))

    def messages_per_day(self, since: datetime, zone=timezone.utc) -> list[tuple[str, int]]:
        """Messages per calendar day in `zone` (the display timezone, for people). Counted per UTC
        minute in SQL, then the minutes are put on their local day: exact for every zone offset."""
        days: dict[str, int] = {}
        for minute, n in self._query(
                "SELECT substr(at, 1, 16) AS minute, COUNT(*) FROM events WHERE kind = 'message' "
                "AND at >= ? GROUP BY minute", (_iso(since),)):
            day = datetime.fromisoformat(minute + ":00+00:00").astimezone(zone).date().isoformat()
            days[day] = days.get(day, 0) + n
        return sorted(days.items())

    def appeals_per_status(self) -> dict[str, int]:
        return dict(self._query("SELECT status, COUNT(*) FROM appeals GROUP BY status"))

    def monitor_counts(self) -> dict[str, list[tuple]]:
        """What /metrics reads at scrape time (bot/metrics.py): unsent replies per account (with the
        oldest one's time), conversations not idle per account, appeals per status."""
        return {"outbox": [tuple(r) for r in self._query(
                    "SELECT account, COUNT(*), MIN(created_at) FROM outbox WHERE sent_at IS NULL GROUP BY account")],
                "conversations": [tuple(r) for r in self._query(
                    "SELECT account, COUNT(*) FROM conversations WHERE state <> 'idle' GROUP BY account")],
                "appeals": list(self.appeals_per_status().items())}

    # -- unmatched messages ----------------------------------------------------------------------
    def record_unmatched(self, text: str, at: datetime) -> None:
        self._exec(*self._unmatched_sql(text, at))

    def top_unmatched(self, since: datetime, limit: int = 10) -> list[tuple[str, int]]:
        """Idle unmatched messages only, as (text, count), most frequent first."""
        return [tuple(r) for r in self._query("SELECT text, count FROM unmatched WHERE last_at >= ? "
                                              "ORDER BY count DESC, last_at DESC LIMIT ?", (_iso(since), limit))]

    UNMATCHED_KEYS = ("text", "count", "last_at", "kind", "state", "awaiting")

    def top_unmatched_all(self, since: datetime, limit: int = 10) -> list[dict]:
        """Both kinds, most frequent first, then most recent: dicts of UNMATCHED_KEYS; `kind` is
        "idle" (state "idle", awaiting "") or "waiting" (not understood while waiting for an answer)."""
        rows = self._query(
            "SELECT text, count, last_at, 'idle' AS kind, 'idle' AS state, '' AS awaiting FROM unmatched "
            "WHERE last_at >= ? UNION ALL "
            "SELECT text, count, last_at, 'waiting' AS kind, state, awaiting FROM unmatched_waiting "
            "WHERE last_at >= ? ORDER BY count DESC, last_at DESC, kind, state, awaiting, text LIMIT ?",
            (_iso(since), _iso(since), limit))
        return [dict(zip(self.UNMATCHED_KEYS, r)) for r in rows]

    def dismiss_unmatched(self, text: str, state: str | None = None, awaiting: str | None = None) -> None:
        """Remove an idle row (`state` None or "idle"), else the waiting row of (text, state, awaiting)."""
        if state is None or state == "idle":
            self._exec("DELETE FROM unmatched WHERE text = ?", (text,))
        else:
            self._exec("DELETE FROM unmatched_waiting WHERE text = ? AND state = ? AND awaiting = ?",
                       (text, state, awaiting or ""))

    # -- operators of the web console, and the audit log (no personal data in either) ------------
    def web_user(self, name: str) -> dict | None:
        rows = self._query("SELECT name, hash, failed, locked_until FROM web_users WHERE name = ?", (name,))
        return dict(zip(("name", "hash", "failed", "locked_until"), rows[0])) if rows else None

    def web_users(self) -> list[str]:
        return [r[0] for r in self._query("SELECT name FROM web_users ORDER BY name")]

    def set_web_user(self, name: str, password_hash: str, at: datetime) -> None:
        self._exec("INSERT INTO web_users (name, hash, created_at) VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE "
                   "SET hash = excluded.hash, failed = 0, locked_until = NULL", (name, password_hash, _iso(at)))

    def delete_web_user(self, name: str) -> bool:
        return self._exec("DELETE FROM web_users WHERE name = ?", (name,)) == 1

    def web_login_result(self, name: str, ok: bool, locked_until: datetime | None = None) -> None:
        if ok:
            self._exec("UPDATE web_users SET failed = 0, locked_until = NULL WHERE name = ?", (name,))
        else:
            self._exec("UPDATE web_users SET failed = failed + 1, locked_until = ? WHERE name = ?",
                       (_iso(locked_until) if locked_until else None, name))

    def audit(self, who: str, action: str, target: str | None, source: str | None, at: datetime | None = None) -> None:
        self._exec("INSERT INTO audit (at, who, action, target, source) VALUES (?, ?, ?, ?, ?)",
                   (_iso(at or datetime.now(timezone.utc)), who, action, target, source))

    def audit_log(self, limit: int = 200, offset: int = 0) -> list[dict]:
        rows = self._query(f"SELECT at, who, action, target, source FROM audit ORDER BY at DESC, {self.SEQ} DESC "
                           "LIMIT ? OFFSET ?", (limit, offset))
        return [dict(zip(("at", "who", "action", "target", "source"), r)) for r in rows]

    # -- rooms -----------------------------------------------------------------------------------
    def room_mode(self, room: str) -> str | None:
        rows = self._query("SELECT mode FROM rooms WHERE room = ?", (room,))
        return rows[0][0] if rows else None

    def set_room_mode(self, room: str, mode: str) -> None:
        self._exec("INSERT INTO rooms (room, mode) VALUES (?, ?) ON CONFLICT (room) DO UPDATE SET "
                   "mode = excluded.mode", (room, mode))
