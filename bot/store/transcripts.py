"""The store's queries for conversation review: the transcripts of recent DM turns (what the creator
said, redacted; the bot's reply; the states; how the message was read), encrypted like conversations
and kept `transcript_days`. Operators list conversations (newest first, filtered by a misread turn,
a state or a prompt), read one as a chat, and label a turn. A mixin of `SqlStore`."""
from __future__ import annotations

import hashlib
import json
from datetime import datetime

from bot.store.records import _iso

TURN_COLUMNS = "seq, conv, at, state_before, state_after, prompt_id, misread, label, labelled_by, payload"
CONVERSATION_KEYS = ("conv", "first_at", "last_at", "turns", "misread_turns", "last_seq")


def conversation_id(chat: str, sender: str) -> str:
    """What operators see and link to instead of the contact ids: a short one-way hash."""
    return hashlib.sha256(f"{chat}\0{sender}".encode()).hexdigest()[:16]


class TranscriptQueries:
    """Transcripts of conversations, for review (a mixin of `SqlStore`)."""

    def _transcript_sql(self, row: tuple) -> tuple[str, tuple]:
        conv, chat, sender, at, before, after, prompt_id, misread, payload = row
        blob = self._vault.encrypt(json.dumps(payload, ensure_ascii=False).encode())
        return ("INSERT INTO transcripts (conv, chat, sender, at, state_before, state_after, prompt_id, misread, "
                "payload, account) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (conv, chat, sender, _iso(at), before, after, prompt_id, misread, blob, self.account))

    def _turn(self, row) -> dict:
        seq, conv, at, before, after, prompt_id, misread, label, by, blob = row
        payload = json.loads(self._vault.decrypt(bytes(blob)))
        return {"seq": seq, "conv": conv, "at": at, "state_before": before, "state_after": after,
                "prompt_id": prompt_id, "misread": [m for m in misread.split(",") if m], "label": label,
                "labelled_by": by, **payload}

    def transcript_conversations(self, misread: bool = False, state: str | None = None, prompt: int | None = None,
                                 limit: int = 25, offset: int = 0) -> tuple[list[dict], int]:
        """Conversations with transcripts, newest first, as dicts of CONVERSATION_KEYS plus
        `last_state`; and how many match in all (for paging). `misread`: only those with a misread
        turn; `state`: a turn before or after which the conversation was in it; `prompt`: a turn
        about that prompt."""
        having, args = [], []
        if misread:
            having.append("SUM(CASE WHEN misread <> '' THEN 1 ELSE 0 END) > 0")
        if state:
            having.append("SUM(CASE WHEN state_before = ? OR state_after = ? THEN 1 ELSE 0 END) > 0")
            args += [state, state]
        if prompt is not None:
            having.append("SUM(CASE WHEN prompt_id = ? THEN 1 ELSE 0 END) > 0")
            args.append(int(prompt))
        grouped = ("SELECT conv, MIN(at) AS first_at, MAX(at) AS last_at, COUNT(*) AS turns, "
                   "SUM(CASE WHEN misread <> '' THEN 1 ELSE 0 END) AS misread_turns, MAX(seq) AS last_seq "
                   "FROM transcripts GROUP BY conv" + (" HAVING " + " AND ".join(having) if having else ""))
        total = self._query(f"SELECT COUNT(*) FROM ({grouped}) AS g", tuple(args))[0][0]
        rows = self._query(grouped + " ORDER BY last_at DESC, last_seq DESC LIMIT ? OFFSET ?",
                           (*args, limit, offset))
        out = []
        for r in rows:
            d = dict(zip(CONVERSATION_KEYS, r))
            last = self._query("SELECT state_after, prompt_id FROM transcripts WHERE seq = ?", (d["last_seq"],))
            d["last_state"], d["prompt_id"] = last[0] if last else ("idle", None)
            out.append(d)
        return out, total

    def transcript_turns(self, conv: str) -> list[dict]:
        """One conversation's turns, oldest first (decrypted: text redacted at recording)."""
        rows = self._query(f"SELECT {TURN_COLUMNS} FROM transcripts WHERE conv = ? ORDER BY seq", (conv,))
        return [self._turn(r) for r in rows]

    def transcript_turn(self, seq: int) -> dict | None:
        rows = self._query(f"SELECT {TURN_COLUMNS} FROM transcripts WHERE seq = ?", (int(seq),))
        return self._turn(rows[0]) if rows else None

    def last_transcript_text(self, conv: str) -> str | None:
        """The creator's text in the conversation's last recorded turn (to notice a repetition)."""
        rows = self._query(f"SELECT {TURN_COLUMNS} FROM transcripts WHERE conv = ? ORDER BY seq DESC LIMIT 1",
                           (conv,))
        return self._turn(rows[0]).get("text") if rows else None

    def label_transcript(self, seq: int, label: str, by: str) -> bool:
        return self._exec("UPDATE transcripts SET label = ?, labelled_by = ? WHERE seq = ?",
                          (label, by, int(seq))) == 1

    def prune_transcripts(self, before: datetime) -> int:
        """Retention: turns older than `before` go."""
        return self._exec("DELETE FROM transcripts WHERE at < ?", (_iso(before),))
