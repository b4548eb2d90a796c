"""The shipped gateway (deploy/gateway/gateway.mjs) itself: the default puppet without network, the
login QR code, the session kept across a restart, SIGTERM, bad settings. The message flows through
it are tests/e2e/test_wechat_e2e.py's.

No test here talks to WeChat: the default puppet (wechat4u) runs with tests/e2e/offline.mjs preloaded,
so no host name resolves whatever network the machine has; the others use the mock puppet.
"""
from __future__ import annotations

import base64
import json
import re
import stat
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from .conftest import GATEWAY_DIR, TOKEN, free_port, gateway_env

if TYPE_CHECKING:
    from .conftest import Gateway

pytestmark = pytest.mark.e2e

OFFLINE = {"NODE_OPTIONS": f"--import={Path(__file__).resolve().parent / 'offline.mjs'}"}
STACK_LINE = re.compile(r"^\s+at \S")  # a line of a JavaScript stack trace
QR_CHARS = set("█▀▄ ")


# -- the default puppet without network -------------------------------------------------------------
def test_default_puppet_without_network_one_line_and_the_bot_waits(start_gateway, start_bot, e2e_tmp):
    """wechat4u fails asynchronously (it starts, then each login request fails and it retries every
    ~5 s, a dozen errors a time): the gateway keeps serving and says it once, in one line; the bot
    connects, logs that the gateway is not logged in, and keeps waiting across a gateway restart."""
    gw = start_gateway(puppet="wechaty-puppet-wechat4u", extra_env=OFFLINE)
    first = gw.wait_line("cannot reach WeChat's servers", timeout=20)
    assert "ENOTFOUND" in gw.lines[first] and "not logged in" in gw.lines[first]

    bot = start_bot(e2e_tmp / "data-offline", gw.endpoint)
    log = bot.wait_log("is not logged in", timeout=40)
    notice = next(line for line in log.splitlines() if "is not logged in" in line)
    assert "WARNING" in notice and gw.endpoint in notice
    assert "last error: getaddrinfo ENOTFOUND login.wx.qq.com" in notice
    assert "Scan the QR code the gateway prints" in notice

    # by now (10 s and more) wechat4u has retried several times: still one line, no stack trace
    out, err = gw.lines[:], gw.stderr()
    assert sum("cannot reach WeChat's servers" in line for line in out) == 1, out
    assert not any(STACK_LINE.match(line) for line in out + err.splitlines()), (out, err)
    assert err.strip() == "", err
    assert len(out) <= 5, out  # served on / cannot reach / a bot connected
    assert gw.proc.poll() is None

    # the gateway goes away and comes back: the bot reconnects and is still waiting, never exits
    assert gw.terminate() == 0
    gw2 = start_gateway(gw.port, puppet="wechaty-puppet-wechat4u", extra_env=OFFLINE)
    gw2.wait_line("cannot reach WeChat's servers", timeout=20)
    log = bot.wait_log("answered; waiting for login", count=2, timeout=40)
    assert "gateway connection ended" in log
    log = bot.wait_log("is not logged in", count=2, timeout=40)
    assert bot.proc.poll() is None
    assert bot.stop() == 0
    assert "Traceback" not in bot.log()


# -- the login QR code -------------------------------------------------------------------------------
def decode_qr(lines: list[str]) -> str | None:
    """What a phone would read from the QR code printed as half blocks (qrcode-terminal, small):
    each character is two modules, top and bottom; the text is decoded with jsQR (in the gateway's
    node_modules, a dependency of file-box)."""
    halves = {"█": (1, 1), "▀": (1, 0), "▄": (0, 1), " ": (0, 0)}  # 1 = light
    width = max(len(line) for line in lines)
    rows: list[list[int]] = []
    for line in lines:
        line = line.ljust(width)
        rows.append([halves[c][0] for c in line])
        rows.append([halves[c][1] for c in line])
    scale, quiet = 6, 4
    w, h = (width + 2 * quiet) * scale, (len(rows) + 2 * quiet) * scale
    pixels = bytearray(b"\xff" * (w * h * 4))
    for y, row in enumerate(rows):
        for x, light in enumerate(row):
            if light:
                continue
            for dy in range(scale):
                start = (((y + quiet) * scale + dy) * w + (x + quiet) * scale) * 4
                pixels[start:start + scale * 4] = b"\x00\x00\x00\xff" * scale
    script = ("const jsQR = require('jsqr'); let s = ''; process.stdin.on('data', d => s += d);"
              "process.stdin.on('end', () => { const m = JSON.parse(s);"
              "const r = jsQR(new Uint8ClampedArray(Buffer.from(m.data, 'base64')), m.w, m.h, "
              "{inversionAttempts: 'attemptBoth'}); process.stdout.write(JSON.stringify(r ? r.data : null)) })")
    proc = subprocess.run(["node", "-e", script], cwd=GATEWAY_DIR, capture_output=True, text=True, timeout=60,
                          input=json.dumps({"w": w, "h": h, "data": base64.b64encode(bytes(pixels)).decode()}))
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def qr_block(gw: Gateway, since: int) -> tuple[list[str], str]:
    """The QR code lines printed after line `since`, and the URL printed after them."""
    intro = gw.wait_line("scan this QR code", since=since)
    url_at = gw.wait_line("QR code URL", since=intro)
    block = [line for line in gw.lines[intro + 1:url_at] if line.strip()]
    assert block and all(set(line) <= QR_CHARS for line in block), gw.lines[intro:url_at + 1]
    return block, gw.lines[url_at].rsplit(" ", 1)[-1]


def test_scan_event_prints_the_qr_code_and_its_url(start_gateway, e2e_tmp):
    gw = start_gateway(data_dir=e2e_tmp / "gw-scan", extra_env={"WECHATY_GATEWAY_MOCK_LOGIN": "scan"})
    scan = gw.wait(lambda e: e["event"] == "scan", since=0)
    assert scan["status"] == 2 and scan["qrcode"].startswith("https://login.weixin.qq.com/l/")
    block, url = qr_block(gw, 0)
    assert url == scan["qrcode"]
    assert decode_qr(block) == scan["qrcode"]  # the printed code scans as the puppet's QR code

    # another scan event (a new code, as after a timeout) prints the new code
    mark = len(gw.lines)
    assert gw.send("scan", qrcode="https://login.weixin.qq.com/l/another-code==", status=2)["event"] == "sent"
    block, url = qr_block(gw, mark)
    assert url == "https://login.weixin.qq.com/l/another-code==" and decode_qr(block) == url

    mark = len(gw.lines)
    gw.send("scan", status=3)  # scanned on the phone: no code, a hint
    gw.wait_line("QR code scanned: confirm the login on the phone", since=mark)
    gw.send("confirm")
    gw.wait(lambda e: e["event"] == "login", since=0)
    gw.wait_line("logged in as DayuBot (wxid_dayubot)", since=mark)
    assert not any(STACK_LINE.match(line) for line in gw.lines + gw.stderr().splitlines())


# -- the session across restarts ---------------------------------------------------------------------
def test_session_survives_a_restart(start_gateway, e2e_tmp):
    data = e2e_tmp / "gw-session"
    extra = {"WECHATY_GATEWAY_MOCK_LOGIN": "scan"}
    gw = start_gateway(data_dir=data, extra_env=extra)
    card = Path(gw.info["sessionFile"])
    assert card == data / "mock.memory-card.json"
    gw.wait(lambda e: e["event"] == "scan", since=0)  # a new account: it needs a scan
    gw.send("confirm")
    gw.wait(lambda e: e["event"] == "login", since=0)
    gw.wait_line("the session is kept in")
    saved = json.loads(card.read_text(encoding="utf-8"))
    assert [v["userId"] for k, v in saved.items() if k.endswith("MOCK-SESSION")] == ["wxid_dayubot"]
    assert stat.S_IMODE(card.stat().st_mode) == 0o600 and stat.S_IMODE(data.stat().st_mode) == 0o700
    assert gw.terminate() == 0  # SIGTERM: a clean stop, exit 0
    assert gw.lines[-1].endswith("gateway: stopping (SIGTERM)"), gw.lines[-3:]

    port = gw.port
    gw = start_gateway(port, data_dir=data, extra_env=extra)  # restarted: logged in from the card
    gw.wait(lambda e: e["event"] == "login", since=0)
    gw.wait_line("session restored from the memory card")
    assert any("session found in" in line for line in gw.lines)
    assert gw.find(lambda e: e["event"] == "scan") == []
    assert not any("scan this QR code" in line for line in gw.lines)

    # logged out (on the phone): the session is dropped, and the next start needs a scan again
    gw.send("logout")
    gw.wait(lambda e: e["event"] == "logout", since=0)
    gw.wait_line("logged out (logged out on the phone)")
    assert gw.terminate() == 0
    assert not any(k.endswith("MOCK-SESSION") for k in json.loads(card.read_text(encoding="utf-8")))
    gw = start_gateway(port, data_dir=data, extra_env=extra)
    gw.wait(lambda e: e["event"] == "scan", since=0)
    time.sleep(0.5)
    assert gw.find(lambda e: e["event"] == "login") == []


def test_an_unreadable_session_file_is_kept_aside(start_gateway, e2e_tmp):
    data = e2e_tmp / "gw-corrupt"
    data.mkdir()
    (data / "mock.memory-card.json").write_text('{"\\rpuppet\\nMOCK-SESS', encoding="utf-8")  # cut mid-write
    gw = start_gateway(data_dir=data, extra_env={"WECHATY_GATEWAY_MOCK_LOGIN": "scan"})
    assert any("is not valid" in line and "a new scan is needed" in line for line in gw.lines[:2]), gw.lines
    assert (data / "mock.memory-card.json.bad").exists()
    gw.wait(lambda e: e["event"] == "scan", since=0)  # it starts, and asks for a scan


# -- logged out and in again while the bot is connected ------------------------------------------------
def test_logout_and_login_again_with_the_bot_connected(start_gateway, start_bot, e2e_tmp):
    """The account is logged out (on the phone, or by WeChat) and someone scans the new QR code: the
    bot says so, waits, and answers again once the gateway is logged in, on the same connection."""
    from .test_wechat_e2e import PROMPT, REMEDY, dm, texts

    gw = start_gateway(data_dir=e2e_tmp / "gw-relogin")
    since = gw.mark()
    bot = start_bot(e2e_tmp / "data-relogin", gw.endpoint)
    bot.wait_connected(gw, since)
    bot.wait_log("logged in as wxid_dayubot")

    gw.send("logout")
    gw.wait_line("logged out (logged out on the phone)")
    bot.wait_log("gateway reports logout")
    bot.wait_log("needs a QR scan (status Waiting)")
    gw.send("confirm")  # scanned and confirmed on the phone
    bot.wait_log("logged in again as wxid_dayubot")
    assert REMEDY in texts(dm(gw, "bob", PROMPT))
    assert gw.find(lambda e: e["event"] == "client_stream_closed") == []  # one connection throughout
    assert bot.stop() == 0
    assert "Traceback" not in bot.log() and "is not logged in" not in bot.log()


# -- bad settings: one line, exit 2 ------------------------------------------------------------------
@pytest.mark.parametrize("change, says", [
    ({"WECHATY_PUPPET_SERVICE_TOKEN": ""}, "WECHATY_PUPPET_SERVICE_TOKEN is not set"),
    ({"WECHATY_PUPPET": "wechaty-puppet-xyz"}, "WECHATY_PUPPET=wechaty-puppet-xyz is not supported"),
    ({"WECHATY_PUPPET": "wechaty-puppet-padlocal"}, "needs WECHATY_PUPPET_PADLOCAL_TOKEN"),
    ({"WECHATY_PUPPET_SERVICE_ENDPOINT": "8788"}, "must be host:port"),
])
def test_bad_settings_exit_2_with_one_line(gateway_install, e2e_tmp, change, says):
    env = gateway_env(TOKEN, f"127.0.0.1:{free_port()}", e2e_tmp / "gw-bad")
    env.update(change)
    proc = subprocess.run(["node", "gateway.mjs"], cwd=GATEWAY_DIR, env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and says in proc.stderr, proc.stderr


def test_port_in_use_exits_1_with_one_line(start_gateway, gateway_install, e2e_tmp):
    gw = start_gateway()
    env = gateway_env(TOKEN, gw.endpoint, e2e_tmp / "gw-busy")
    proc = subprocess.run(["node", "gateway.mjs"], cwd=GATEWAY_DIR, env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and f"cannot listen on {gw.endpoint}" in proc.stderr, proc.stderr


def test_env_names_are_the_bots():
    """The gateway reads the token and endpoint under the names the bot reads (bot/settings.py)."""
    settings = (Path(__file__).resolve().parents[2] / "bot" / "settings.py").read_text(encoding="utf-8")
    source = (GATEWAY_DIR / "gateway.mjs").read_text(encoding="utf-8")
    for name in ("WECHATY_PUPPET_SERVICE_TOKEN", "WECHATY_PUPPET_SERVICE_ENDPOINT"):
        assert name in settings and f"process.env.{name}" in source
