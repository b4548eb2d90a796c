"""No Docker engine runs on our machines: check that the image runs what the README documents."""
import re

from conftest import ROOT


def test_dockerfile_runs_the_documented_command_as_non_root():
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    cmd = re.search(r'^CMD \[(.*)\]$', text, re.M).group(1)
    assert [p.strip().strip('"') for p in cmd.split(",")] == ["python", "-m", "bot", "run"]
    user = re.findall(r"^USER (\S+)$", text, re.M)
    assert user and user[-1] not in ("root", "0")
    assert 'VOLUME ["/data"]' in text and "BOT_DATA_DIR=/data" in text
    docs = (ROOT / "docs" / "wechat.md").read_text(encoding="utf-8")
    assert "python -m bot run" in docs and "docker run" in docs and "/data" in docs
    for var in ("WECHATY_PUPPET_SERVICE_TOKEN", "WECHATY_PUPPET_SERVICE_ENDPOINT"):
        assert var in docs
