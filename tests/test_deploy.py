"""The shared deployment's compose file (no Docker engine here: it is read, not started): PostgreSQL
and two bot services on one database, one key and one knowledge volume, each with its own account,
gateway token and data dir."""
import yaml

from conftest import ROOT


def test_compose_runs_two_accounts_on_one_store():
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text(encoding="utf-8"))
    services = compose["services"]
    assert "postgres" in services and services["postgres"]["image"].startswith("postgres:")
    bots = {name: s for name, s in services.items() if s.get("command") is None and name.startswith("bot")}
    assert len(bots) == 2
    env = {name: s["environment"] for name, s in bots.items()}
    shared = ("BOT_DATABASE_URL", "BOT_KEY_FILE")
    for var in shared:  # the same for both
        assert len({e[var] for e in env.values()}) == 1, var
    assert all(e["BOT_DATABASE_URL"].startswith("postgresql://") for e in env.values())
    for var in ("BOT_ACCOUNT", "WECHATY_PUPPET_SERVICE_TOKEN", "WECHATY_PUPPET_SERVICE_ENDPOINT"):
        assert len({e[var] for e in env.values()}) == 2, var  # each its own
    for name, s in bots.items():
        assert "appeal_key" in s["secrets"]
        volumes = dict(v.split(":", 1) for v in s["volumes"])
        assert volumes["knowledge"] == "/app/knowledge"  # one knowledge volume for all
        assert volumes.get(f"data-{name[-1]}") == "/data"  # its own data dir
        assert "PGPASSWORD" in s["environment"] and "@" in s["environment"]["BOT_DATABASE_URL"]
        assert ":" not in s["environment"]["BOT_DATABASE_URL"].split("//", 1)[1].split("@")[0]  # no password
    docs = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    assert "db copy --from sqlite:///" in docs and "deploy/compose.yaml" in docs
