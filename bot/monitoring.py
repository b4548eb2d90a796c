"""The endpoints a scraper and a health check call, without login: `/metrics` (Prometheus text),
`/healthz` (the process is up and its event loop answers) and `/readyz` (it can do its work: the
store answers, the knowledge base is loaded, and for `run` the gateway's account is logged in).

The web console mounts them (`routes`) on its own port; `run`, `chat` and `replay` serve them on
`metrics_port` (`MetricsServer`: a small Starlette app on uvicorn, in the bot's event loop, so a
stuck loop fails /healthz). What the numbers mean: bot/metrics.py and docs/monitoring.md. The
answers hold fixed words and counts only: no ids, no texts, no store address.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from typing import Callable

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import GaugeMetricFamily
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bot import metrics

log = logging.getLogger(__name__)

NO_STORE = {"Cache-Control": "no-store"}
CHECK_TIMEOUT = 5.0  # seconds a probe or a scrape waits for the store before it answers without it


class Health:
    """What /readyz checks and /metrics adds at scrape time, for one process: its store, whether
    its knowledge base is loaded, and (`run` only) whether the gateway's account is logged in."""

    def __init__(self, store, knowledge: Callable[[], bool], gateway: Callable[[], bool] | None = None,
                 accounts=()):
        self.store = store
        self.knowledge = knowledge
        self.gateway = gateway
        self.started = time.time()
        self._collector = metrics.StoreCollector(store, accounts, self._gateway_family)
        self._ping: asyncio.Future | None = None

    def _gateway_family(self):
        if self.gateway is not None:
            g = GaugeMetricFamily("bot_gateway_logged_in", "1 while the WeChat gateway's account is logged in")
            g.add_metric([], 1 if self.gateway() else 0)
            yield g

    def collect(self):
        """The process's counters, then the store's gauges (a registry-like object for generate_latest)."""
        yield from metrics.REGISTRY.collect()
        yield from self._collector.collect()

    async def _store_ok(self) -> str:
        # One ping at a time: probes arriving while the store hangs share it instead of piling up threads.
        if self._ping is None or self._ping.done() or self._ping.get_loop() is not asyncio.get_running_loop():
            self._ping = asyncio.ensure_future(asyncio.to_thread(self.store.ping))
        try:
            await asyncio.wait_for(asyncio.shield(self._ping), CHECK_TIMEOUT)
        except asyncio.TimeoutError:
            return "timeout"
        except Exception:  # noqa: BLE001 - any error means: not reachable now
            return "unreachable"
        return "ok"

    async def ready(self) -> tuple[bool, dict[str, str]]:
        checks = {"store": await self._store_ok(), "knowledge": "ok" if self.knowledge() else "not loaded"}
        if self.gateway is not None:
            checks["gateway"] = "ok" if self.gateway() else "not logged in"
        return all(v == "ok" for v in checks.values()), checks

    async def exposition(self) -> bytes:
        return await asyncio.wait_for(asyncio.to_thread(generate_latest, self), CHECK_TIMEOUT * 2)


def routes(health: Health) -> list[Route]:
    async def healthz(request: Request):
        return JSONResponse({"status": "ok", "uptime_seconds": round(time.time() - health.started, 1)},
                            headers=NO_STORE)

    async def readyz(request: Request):
        ok, checks = await health.ready()
        return JSONResponse({"ready": ok, "checks": checks}, status_code=200 if ok else 503, headers=NO_STORE)

    async def metrics_page(request: Request):
        try:
            body = await health.exposition()
        except asyncio.TimeoutError:
            return Response("store did not answer in time\n", status_code=503, media_type="text/plain")
        return Response(body, media_type=CONTENT_TYPE_LATEST, headers=NO_STORE)

    return [Route("/healthz", healthz), Route("/readyz", readyz), Route("/metrics", metrics_page)]


class MetricsPortError(OSError):
    """metrics_host:metrics_port cannot be listened on (in use, a wrong address)."""


def _bind(host: str, port: int) -> socket.socket:
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(addr)
        except OSError:
            sock.close()
            raise
    except OSError as exc:
        raise MetricsPortError(f"cannot listen on {host}:{port} for /metrics, /healthz and /readyz "
                               f"(metrics_host, metrics_port): {exc.strerror or exc}") from None
    return sock


def _quiet_server(app):
    """uvicorn without its signal handling (the transport or the command owns SIGINT/SIGTERM)."""
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self):
            yield

    return Server(uvicorn.Config(app, log_level="warning", access_log=False, proxy_headers=False,
                                 server_header=False, lifespan="off"))


class MetricsServer:
    """/metrics, /healthz and /readyz on `metrics_host:metrics_port`. The port is bound when made
    (so a taken port is known before the bot starts), served from `start()` to `stop()`."""

    def __init__(self, settings):
        self.host, self.port = settings.metrics_host, settings.metrics_port
        self._sock = _bind(self.host, self.port)
        self._server = None
        self._task: asyncio.Task | None = None

    async def start(self, health: Health) -> None:
        app = Starlette(routes=routes(health))
        self._server = _quiet_server(app)
        self._task = asyncio.create_task(self._server.serve(sockets=[self._sock]), name="metrics-server")
        log.info("metrics, health and readiness on http://%s:%d/metrics", self.host, self.port)

    async def stop(self) -> None:
        if self._task is not None:
            self._server.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, 5)
        self._sock.close()


async def start_monitoring(settings, engine) -> MetricsServer | None:
    """chat and replay: the metrics port when set (no gateway to check); a taken port is a warning."""
    server = open_metrics_server(settings, required=False)
    if server is not None:
        await server.start(Health(engine.store, lambda: engine.snapshot is not None,
                                  accounts=[settings.account]))
    return server


async def stop_monitoring(server: MetricsServer | None) -> None:
    if server is not None:
        await server.stop()


def open_metrics_server(settings, required: bool) -> MetricsServer | None:
    """The metrics port when `metrics_port` is set, else None. A port that cannot be bound stops
    `run` (`required`: its health check would fail anyway) and is a warning for chat and replay."""
    if not settings.metrics_port:
        return None
    try:
        return MetricsServer(settings)
    except MetricsPortError as exc:
        if required:
            raise
        log.warning("%s; going on without them", exc)
        return None
