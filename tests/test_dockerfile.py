"""No Docker engine runs on our machines: check that the image runs what the README documents,
and how it is built (bench/image_size.py builds it for real, daemonless; docs/deploy.md)."""
import http.server
import json
import re
import shutil
import subprocess
import sys
import threading
import tomllib
from pathlib import Path

import pytest

from conftest import ROOT

DOCKERFILE = (ROOT / "Dockerfile").read_text(encoding="utf-8")
SLIM = ROOT / "deploy" / "slim-venv.sh"


def stages(text: str) -> list[tuple[str, str]]:
    """(FROM line, body) of each stage, in order."""
    parts = re.split(r"^(FROM .*)$", text, flags=re.M)
    return [(parts[i], parts[i + 1]) for i in range(1, len(parts), 2)]


def instructions(body: str) -> list[str]:
    """The stage's instructions, continuation lines joined, comments dropped."""
    lines = [line for line in body.splitlines() if not line.lstrip().startswith("#")]
    return [i.strip() for i in re.sub(r"\\\n", " ", "\n".join(lines)).splitlines() if i.strip()]


def test_dockerfile_runs_the_documented_command_as_non_root():
    cmd = re.search(r'^CMD \[(.*)\]$', DOCKERFILE, re.M).group(1)
    assert [p.strip().strip('"') for p in cmd.split(",")] == ["python", "-m", "bot", "run"]
    user = re.findall(r"^USER (\S+)$", DOCKERFILE, re.M)
    assert user and user[-1] not in ("root", "0")
    assert 'VOLUME ["/data"]' in DOCKERFILE and "BOT_DATA_DIR=/data" in DOCKERFILE
    docs = (ROOT / "docs" / "wechat.md").read_text(encoding="utf-8")
    assert "python -m bot run" in docs and "docker run" in docs and "/data" in docs
    for var in ("WECHATY_PUPPET_SERVICE_TOKEN", "WECHATY_PUPPET_SERVICE_ENDPOINT"):
        assert var in docs


def test_two_stages_on_one_base_and_the_final_one_copies_only_the_runtime():
    (build_from, build), (final_from, final) = stages(DOCKERFILE)
    assert re.fullmatch(r"FROM \$\{BASE\} AS build", build_from)
    assert final_from == "FROM ${BASE}"  # the venv's python is the base's: same image both times
    assert re.search(r"^ARG BASE=python:3\.11-slim$", DOCKERFILE, re.M)
    # the build stage makes wheels, installs them into the venv, slims it
    assert "pip wheel" in build and "--no-index --find-links /wheels" in build
    assert "slim-venv /opt/venv" in build
    steps = instructions(final)
    copies = [s for s in steps if s.startswith("COPY")]
    assert copies == ["COPY --from=build /opt/venv /opt/venv", "COPY --chown=bot:bot knowledge ./knowledge"]
    # nothing is installed or compiled in the final stage: no compiler, pip or apt there
    runs = " ".join(s for s in steps if s.startswith("RUN"))
    for word in ("pip", "apt-get", "gcc", "build-essential", "binutils", "compileall", "wheel"):
        assert word not in runs
    assert "PATH=/opt/venv/bin:$PATH" in final


def test_final_stage_keeps_user_dirs_and_env_defaults():
    final = stages(DOCKERFILE)[-1][1]
    assert "useradd --system --uid 10001 --home-dir /app bot" in final
    assert "chown bot:bot /data /keys && chmod 0700 /data /keys" in final
    for env in ("BOT_DATA_DIR=/data", "BOT_KEY_FILE=/keys/appeal.key", "BOT_KNOWLEDGE_DIR=/app/knowledge",
                "BOT_METRICS_PORT=9108", "PYTHONUNBUFFERED=1", "PYTHONDONTWRITEBYTECODE=1"):
        assert env in final
    assert final.index("USER bot") > final.index("COPY --chown=bot:bot knowledge")


def test_ocr_build_argument():
    build = stages(DOCKERFILE)[0][1]
    assert re.search(r"^ARG OCR=1$", build, re.M)  # on by default
    assert "1) extras='[ocr]'" in build and "0) extras=''" in build
    assert "*) echo" in build and "exit 1" in build  # anything else fails the build


def test_healthcheck_asks_healthz_on_the_metrics_port_with_urllib():
    final = stages(DOCKERFILE)[-1][1]
    check = re.search(r"^HEALTHCHECK (.*?) CMD (\[.*\])$", re.sub(r"\\\n\s*", "", final), re.M)
    assert check, "HEALTHCHECK ... CMD [...] in the final stage"
    assert "--interval=" in check.group(1) and "--timeout=" in check.group(1)
    argv = json.loads(check.group(2))
    assert argv[:2] == ["python", "-c"]
    code = argv[2]
    assert "urllib.request.urlopen" in code and "BOT_METRICS_PORT" in code and "'9108'" in code
    assert "http://127.0.0.1:%s/healthz" in code


def test_healthcheck_command_fails_without_a_server_and_passes_with_one():
    """Run the HEALTHCHECK's Python against a throwaway /healthz server (and a closed port)."""
    final = stages(DOCKERFILE)[-1][1]
    code = json.loads(re.search(r"CMD (\[\"python\", \"-c\".*\])$", re.sub(r"\\\n\s*", "", final), re.M)
                      .group(1))[2]

    class Healthz(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/healthz" else 404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Healthz)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = str(server.server_address[1])
        ok = subprocess.run([sys.executable, "-c", code], env={"BOT_METRICS_PORT": port},
                            capture_output=True, timeout=30)
        assert ok.returncode == 0, ok.stderr
    finally:
        server.shutdown()
        server.server_close()
    down = subprocess.run([sys.executable, "-c", code], env={"BOT_METRICS_PORT": port},
                          capture_output=True, timeout=30)
    assert down.returncode != 0


def test_dockerignore_keeps_the_context_small():
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    for path in (".venv", ".git", "**/__pycache__", "tests"):
        assert path in ignored


# ---------------------------------------------------------------------------- slim-venv.sh

def test_slim_script_removes_only_what_it_says_and_keeps_headless_opencv_only():
    text = SLIM.read_text(encoding="utf-8")
    assert "opencv-python opencv-contrib-python" in text  # refuses a GUI OpenCV
    assert "--strip-debug" in text and "ctypes.CDLL" in text  # strip, then prove each lib still loads
    assert "-mindepth 2 -type d -name tests" in text
    assert "import cv2, onnxruntime, rapidocr" in text  # the OCR variant must still import


def test_bot_uses_only_the_jieba_parts_the_image_keeps():
    """slim-venv.sh drops jieba's posseg, analyse and paddle model: the bot must not use them."""
    used = set()
    for path in (ROOT / "bot").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        used |= set(re.findall(r"\bjieba\.(\w+)", text))
        assert not re.search(r"from jieba(\.\w+)? import|import jieba\.", text), path
    assert used and not used & {"posseg", "analyse", "lac_small", "enable_paddle"}


def test_ocr_extra_pins_the_headless_opencv():
    """rapidocr depends on opencv-python-headless; the extra pins it, never the GUI build."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "optional-dependencies"]["ocr"]
    names = [re.split(r"[=<>!\[ ]", req, maxsplit=1)[0] for req in extras]
    assert "opencv-python-headless" in names
    assert "opencv-python" not in names and "opencv-contrib-python" not in names


@pytest.mark.skipif(sys.platform != "linux", reason="the slim script is for the Linux image")
def test_slim_script_on_a_tiny_venv(tmp_path):
    """Run slim-venv.sh for real on a small venv: it removes pip, caches and tests, keeps the rest."""
    if not shutil.which("strip") or not shutil.which("readelf"):
        pytest.skip("binutils not installed")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    site = Path(site)
    # stand-ins for the bot's imports: the script's own check imports them
    for mod in ("bot/__init__.py", "bot/cli.py", "jieba/__init__.py", "jieba/dict.txt", "av.py",
                "cryptography.py", "psycopg.py", "starlette.py", "uvicorn.py",
                "jieba/posseg/__init__.py", "jieba/lac_small/predict.py", "pkg/tests/test_x.py",
                "pkg/__init__.py", "pkg/__pycache__/x.cpython-311.pyc"):
        (site / mod).parent.mkdir(parents=True, exist_ok=True)
        (site / mod).write_text("")
    out = subprocess.run(["sh", str(SLIM), str(venv), "0"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert not (site / "pip").exists() and not (venv / "bin" / "pip").exists()
    assert not (site / "pkg" / "tests").exists() and not (site / "pkg" / "__pycache__").exists()
    assert not (site / "jieba" / "posseg").exists() and not (site / "jieba" / "lac_small").exists()
    assert (site / "jieba" / "dict.txt").exists() and (site / "pkg" / "__init__.py").exists()
    # a GUI OpenCV fails the build
    dist = site / "opencv_python-5.1.0.95.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: opencv-python\nVersion: 5.1.0.95\n")
    refused = subprocess.run(["sh", str(SLIM), str(venv), "0"], capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0 and "opencv-python is installed" in refused.stderr
