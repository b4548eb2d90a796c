"""The store's part of the appeal funnel: the SQL of a turn's funnel steps, the steps an appeal's
status change adds, and the rows a report reads. A mixin of `SqlStore`.

A row is one step of one attempt (`attempt`: a random key kept in the conversation from the remedy
on, see bot/dialog/base.py `_step`), at most once: the primary key (attempt, step, slot) and
`ON CONFLICT DO NOTHING` keep the first time a step was reached, whichever process wrote it. No
personal data: a step, a prompt id, a slot name, a route, an appeal id, a time."""
from __future__ import annotations

from datetime import datetime

from bot.store.records import _iso

# Status changes that are steps of the funnel; the step is the status's name.
FUNNEL_STATUSES = ("sent", "replied", "resolved", "rejected")
FUNNEL_KEYS = ("attempt", "step", "slot", "prompt_id", "route", "appeal_id", "at")


class FunnelQueries:
    """The funnel's rows (a mixin of `SqlStore`)."""

    @staticmethod
    def _funnel_sql(rows: list[tuple]) -> tuple[str, tuple]:
        """One statement for a turn's steps: (attempt, step, slot, prompt_id, route, appeal_id, at)."""
        return ("INSERT INTO funnel (attempt, step, slot, prompt_id, route, appeal_id, at) VALUES "
                + ", ".join(["(?, ?, ?, ?, ?, ?, ?)"] * len(rows)) + " ON CONFLICT DO NOTHING",
                tuple(x for r in rows for x in (*r[:6], _iso(r[6]))))

    @staticmethod
    def _funnel_status_sql(appeal_id: str, status: str, at: datetime) -> list[tuple[str, tuple]]:
        """A status change of an appeal is a step of the attempt that confirmed it (committed with the
        change). Appeals confirmed before the funnel existed have no attempt: nothing is recorded."""
        if status not in FUNNEL_STATUSES:
            return []
        return [("INSERT INTO funnel (attempt, step, slot, prompt_id, route, appeal_id, at) "
                 "SELECT attempt, ?, '', prompt_id, route, appeal_id, ? FROM funnel "
                 "WHERE appeal_id = ? AND step = 'confirmed' ON CONFLICT DO NOTHING",
                 (status, _iso(at), appeal_id))]

    def funnel_rows(self, since: datetime | None = None, until: datetime | None = None) -> list[dict]:
        """Every step of the attempts that began (their first step) in [since, until): dicts of
        FUNNEL_KEYS, in the order they happened. Later steps count even when they fall after `until`."""
        having, args = [], []
        if since is not None:
            having.append("MIN(at) >= ?")
            args.append(_iso(since))
        if until is not None:
            having.append("MIN(at) < ?")
            args.append(_iso(until))
        where = ""
        if having:
            where = (" WHERE attempt IN (SELECT attempt FROM funnel GROUP BY attempt HAVING "
                     + " AND ".join(having) + ")")
        rows = self._query(f"SELECT {', '.join(FUNNEL_KEYS)} FROM funnel{where} ORDER BY at, attempt, step, slot",
                           tuple(args))
        return [dict(zip(FUNNEL_KEYS, r)) for r in rows]

    def funnel_first_at(self) -> str | None:
        """When the first funnel step was recorded (the funnel exists from schema version 10 on)."""
        rows = self._query("SELECT MIN(at) FROM funnel")
        return rows[0][0] if rows else None
