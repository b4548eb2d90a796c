"""The bot's Prometheus metrics, defined in one place (docs/monitoring.md says what each means).

Two kinds, because the console (`python -m bot web`) and each bot process (`run`, one per WeChat
account) are separate processes on one store:

- counters and the turn histogram count what *this process* did (messages handled, replies
  committed, SMTP attempts, IMAP polls, reconnects...). They live in `REGISTRY`; a process that
  handles no messages (the console) shows zeros for them. Prometheus sums them across targets.
- gauges of the shared state (replies waiting in the outbox, conversations in progress, appeals
  per status) are read from the store at scrape time (`StoreCollector`), so every endpoint on one
  store shows the same numbers, whichever process committed the rows: aggregate them with max,
  not sum.

Every label takes its values from a fixed set (message kinds, match tiers, appeal statuses,
results) or the configured account names: never an id, a text or anything a creator sent.
"""
from __future__ import annotations

import time
from datetime import datetime, timezone

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

disable_created_metrics()  # no `*_created` series: they double the output and nobody graphs them

REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)  # process_cpu_seconds_total, process_resident_memory_bytes, ...
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

MESSAGE_KINDS = ("text", "image", "video", "file")
TIERS = {"match": "confident", "suggest": "suggest", "none": "none"}  # the turn's event -> tier
APPEAL_STATUSES = ("ready", "queued", "sent", "replied", "failed", "reviewing", "resolved", "rejected",
                   "need_more", "other")
SMTP_RESULTS = ("sent", "retry", "failed", "too_large", "error")
IMAP_RESULTS = ("ok", "failed")
SEND_RESULTS = ("sent", "retry", "failed")

MESSAGES = Counter("bot_messages", "Messages handled by this process (one turn each; duplicates and "
                   "ignored room messages not counted), by kind", ["kind"], registry=REGISTRY)
REPLIES = Counter("bot_replies", "Replies and notifications this process committed to the outbox",
                  registry=REGISTRY)
MATCHES = Counter("bot_matches", "Failure-prompt matches the dialog recorded (what #stats counts), by tier "
                  "(confident, suggest, none)", ["tier"], registry=REGISTRY)
APPEALS = Counter("bot_appeals", "Appeal status changes this process committed, by the new status",
                  ["status"], registry=REGISTRY)
SMTP_SENDS = Counter("bot_smtp_sends", "Attempts to email an appeal package, by result (sent; retry: a "
                     "temporary failure, tried again later; failed: for good; too_large; error: the "
                     "package could not be prepared)", ["result"], registry=REGISTRY)
IMAP_POLLS = Counter("bot_imap_polls", "Polls of the appeals' mailbox, by result", ["result"], registry=REGISTRY)
RECONNECTS = Counter("bot_gateway_reconnects", "Times the connection to the WeChat gateway was lost and "
                     "the bot reconnected", registry=REGISTRY)
SENDS = Counter("bot_sends", "Message parts sent to chats (WeChat, the console, replay), by result (retry: "
                "one failed attempt; failed: given up)", ["result"], registry=REGISTRY)
TURN_SECONDS = Histogram("bot_turn_seconds", "Seconds from a message's arrival at the engine to its "
                         "replies committed (lock wait, understanding, validation, the transaction)",
                         buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30), registry=REGISTRY)

# Children bound once: the hot path does a dict lookup and an increment, no label parsing.
_MESSAGES = {k: MESSAGES.labels(k) for k in MESSAGE_KINDS}
_MATCHES = {event: MATCHES.labels(tier) for event, tier in TIERS.items()}
_APPEALS = {s: APPEALS.labels(s) for s in APPEAL_STATUSES}
for _counter, _results in ((SMTP_SENDS, SMTP_RESULTS), (IMAP_POLLS, IMAP_RESULTS), (SENDS, SEND_RESULTS)):
    for _r in _results:  # every series exists from the start (at 0): rate() sees the first one
        _counter.labels(_r)


def turn_done(msg, started: float) -> None:
    """One message's turn committed (an `Incoming`); `started`: its `time.perf_counter()` on arrival."""
    TURN_SECONDS.observe(time.perf_counter() - started)
    _MESSAGES.get(msg.attachment.kind if msg.attachment else "text", _MESSAGES["file"]).inc()


def committed(writes, replies: int) -> None:
    """What a committed transaction of the store wrote (`SqlStore.commit_turn`): match tiers,
    appeal statuses, replies. Counted in whichever process committed it. (Inside a PostgreSQL
    turn the COMMIT comes when the turn ends: a turn whose COMMIT then fails, the server gone at
    that instant, is counted anyway; its message is answered with the error reply.)"""
    for kind, _, _ in writes.events:
        child = _MATCHES.get(kind)
        if child is not None:
            child.inc()
    for status in writes.statuses:
        _APPEALS.get(status[1], _APPEALS["other"]).inc()
    if replies:
        REPLIES.inc(replies)


def sent(result: str = "sent") -> None:
    SENDS.labels(result).inc()


class StoreCollector:
    """Gauges read from the store when scraped (the numbers of every process on it), and
    `bot_store_up`. `accounts`: shown at 0 when they have nothing (a bot process's own account);
    `extra` yields more scrape-time families (the gateway's login, for `run`)."""

    def __init__(self, store, accounts=(), extra=None):
        self.store = store
        self.accounts = tuple(accounts)
        self.extra = extra

    def describe(self):
        return []  # collected only when scraped, never at registration

    def collect(self):
        up = GaugeMetricFamily("bot_store_up", "1 when this scrape could read the store, else 0")
        try:
            self.store.ping()
            counts = self.store.monitor_counts()
        except Exception:  # noqa: BLE001 - a scrape reports the store down, it never fails
            up.add_metric([], 0)
            yield up
        else:
            up.add_metric([], 1)
            yield up
            yield from _store_families(counts, self.accounts)
        if self.extra is not None:
            yield from self.extra()


def _store_families(counts: dict, accounts: tuple):
    now = datetime.now(timezone.utc)
    outbox = {a or "unassigned": (n, first) for a, n, first in counts["outbox"]}
    conversations = {a or "unassigned": n for a, n in counts["conversations"]}
    for a in accounts:
        outbox.setdefault(a, (0, None))
        conversations.setdefault(a, 0)
    pending = GaugeMetricFamily("bot_outbox_pending", "Replies committed and not yet sent, by the WeChat "
                                "account that sends them (all processes on this store)", labels=["account"])
    oldest = GaugeMetricFamily("bot_outbox_oldest_pending_seconds", "Age of the oldest reply not yet sent, "
                               "by account (all processes on this store)", labels=["account"])
    for account, (n, first) in sorted(outbox.items()):
        pending.add_metric([account], n)
        age = (now - datetime.fromisoformat(first)).total_seconds() if first else 0.0
        oldest.add_metric([account], max(0.0, age))
    active = GaugeMetricFamily("bot_conversations_active", "Conversations waiting for a creator's answer (not "
                               "idle), by the account the creator last wrote to (all processes on this store)",
                               labels=["account"])
    for account, n in sorted(conversations.items()):
        active.add_metric([account], n)
    appeals = GaugeMetricFamily("bot_appeals_by_status", "Appeals in the store, by their current status",
                                labels=["status"])
    have = dict(counts["appeals"])
    for status in APPEAL_STATUSES[:-1]:
        appeals.add_metric([status], have.pop(status, 0))
    if have:
        appeals.add_metric(["other"], sum(have.values()))
    yield from (pending, oldest, active, appeals)
