"""The WeChat gateway's packaging, read not run (tests/e2e/test_gateway.py runs it): exact npm pins
with one copy of wechaty-puppet, the image, the compose services and `make gateway`."""
import json
import re

import yaml

from conftest import ROOT

GATEWAY = ROOT / "deploy" / "gateway"
PUPPETS = ("wechaty-puppet-wechat4u", "wechaty-puppet-padlocal", "wechaty-puppet-mock")


def test_every_npm_dependency_is_pinned_exactly_and_locked():
    package = json.loads((GATEWAY / "package.json").read_text(encoding="utf-8"))
    lock = json.loads((GATEWAY / "package-lock.json").read_text(encoding="utf-8"))
    deps = package["dependencies"]
    assert package["type"] == "module" and package["engines"]["node"] == ">=20"
    assert all(re.fullmatch(r"\d+\.\d+\.\d+", v) for v in deps.values()), deps
    assert lock["packages"][""]["dependencies"] == deps  # the lock is of this package.json
    for name, version in deps.items():
        assert lock["packages"][f"node_modules/{name}"]["version"] == version, name
    # the server the bot is tested against (docs/wechat.md), every puppet, the QR code, the session
    assert deps["wechaty-puppet-service"] == "1.19.9"
    assert {*PUPPETS, "qrcode-terminal", "memory-card"} <= set(deps)
    # one wechaty-puppet for the server and all three puppets: nothing nested under another package
    copies = [k for k in lock["packages"] if k.endswith("node_modules/wechaty-puppet")]
    assert copies == ["node_modules/wechaty-puppet"], copies


def test_one_file_that_loads_only_the_chosen_puppet():
    assert sorted(p.name for p in GATEWAY.glob("*.mjs")) == ["gateway.mjs"]
    source = (GATEWAY / "gateway.mjs").read_text(encoding="utf-8")
    static = re.findall(r"^import .* from '([^']+)'", source, re.M)
    assert not set(static) & set(PUPPETS), static  # puppets: dynamic import() only
    for puppet in PUPPETS:
        assert f"await import('{puppet}')" in source
    assert "tls: { disable: true }" in source


def test_the_image_runs_the_gateway_as_non_root_with_the_session_on_a_volume():
    text = (GATEWAY / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^FROM node:20", text, re.M)
    assert "COPY package.json package-lock.json" in text and "npm ci" in text
    assert re.search(r'^CMD \["node", "gateway.mjs"\]$', text, re.M)
    users = re.findall(r"^USER (\S+)$", text, re.M)
    assert users and users[-1] not in ("root", "0")
    assert 'VOLUME ["/data"]' in text and "WECHATY_GATEWAY_DATA_DIR=/data" in text
    assert {"node_modules", "data"} <= set((GATEWAY / ".dockerignore").read_text().split())


def test_compose_gives_each_bot_its_own_gateway():
    services = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text(encoding="utf-8"))["services"]
    for account in ("a", "b"):
        gw, bot = services[f"gateway-{account}"], services[f"bot-{account}"]
        assert gw["build"] == "./gateway" and gw["network_mode"] == "host" == bot["network_mode"]
        assert gw["volumes"] == [f"gateway-{account}:/data"]  # its session, on its own volume
        assert f"gateway-{account}" in bot["depends_on"] and "postgres" in bot["depends_on"]
        for var in ("WECHATY_PUPPET_SERVICE_TOKEN", "WECHATY_PUPPET_SERVICE_ENDPOINT"):
            assert gw["environment"][var] == bot["environment"][var], var  # the same token and endpoint
        assert gw["environment"]["WECHATY_PUPPET"].endswith(":-wechaty-puppet-wechat4u}")
    assert services["gateway-a"]["environment"]["WECHATY_PUPPET_SERVICE_ENDPOINT"] != \
        services["gateway-b"]["environment"]["WECHATY_PUPPET_SERVICE_ENDPOINT"]


def test_make_gateway_and_make_test_install_from_the_lock_file():
    make = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^GATEWAY := deploy/gateway$", make, re.M)
    assert re.search(r"^gateway: gateway-deps\n\tcd \$\(GATEWAY\) && exec node gateway.mjs$", make, re.M)
    assert re.search(r"^test: .*\bgateway-deps\b", make, re.M)
    assert re.search(r"^\$\(GATEWAY\)/node_modules/\.package-lock\.json: \$\(GATEWAY\)/package-lock\.json.*\n"
                     r"\tcd \$\(GATEWAY\) && npm ci ", make, re.M)
