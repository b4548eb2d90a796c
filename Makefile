# The two commands of the README: `make run` and `make test`. Each sets up what it needs.
# `make gateway` installs and starts the WeChat gateway (docs/wechat.md).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
GATEWAY := deploy/gateway

.PHONY: run test bench setup setup-test gateway gateway-deps e2e-deps node fonts browser postgres dovecot clean

# Two stamps: `make run` installs what running needs (the bot and the OCR extra), `make test` adds
# the test extra (pytest, Playwright, ...) on top. So `make test` after `make run` installs only the
# test extra, and `make run` after `make test` installs nothing.
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[ocr]'
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PY) -m pip install --quiet -e '.[ocr,test]'
	touch $@

setup: $(VENV)/.installed

setup-test: $(VENV)/.installed-test

run: setup
	$(PY) -m bot chat

# CJK font for the screenshot tests (Debian package; needs root, as on CI).
fonts:
	@test -f /usr/share/fonts/truetype/wqy/wqy-microhei.ttc || \
	  { [ "$$(id -u)" = 0 ] && (apt-get update -qq && apt-get install -y -qq fonts-wqy-microhei >/dev/null) \
	    || echo "note: install fonts-wqy-microhei for the screenshot tests"; }

# Debian's Chromium for the real-browser tests (Playwright drives it; never `playwright install`).
browser:
	@test -x /usr/bin/chromium || \
	  { [ "$$(id -u)" = 0 ] && (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	    || echo "note: install chromium (Debian package) for the browser tests"; }

# PostgreSQL server binaries for the store's PostgreSQL tests (Debian package; needs root, as on CI).
# The tests run their own throwaway server (tests/pg_support.py), so the package's default
# cluster on port 5432 is not wanted: create_main_cluster = false before installing.
postgres:
	@ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || \
	  { [ "$$(id -u)" = 0 ] && (mkdir -p /etc/postgresql-common/createcluster.d && \
	    echo 'create_main_cluster = false' >/etc/postgresql-common/createcluster.d/no-main-cluster.conf && \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) \
	    || echo "note: install postgresql (Debian package) for the PostgreSQL tests"; }

# Dovecot's IMAP server for the tests of reading the platform's replies (Debian package; needs root,
# as on CI). The tests run their own throwaway server with a config of their own
# (tests/imap_support.py); the package's configuration and service are not used.
dovecot:
	@test -x /usr/sbin/dovecot -a -x /usr/lib/dovecot/imap || \
	  { [ "$$(id -u)" = 0 ] && (apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dovecot-imapd >/dev/null) \
	    || echo "note: install dovecot-imapd (Debian package) for the IMAP tests"; }

# The Node Wechaty gateway (deploy/gateway), pinned by its package-lock.json: `npm ci` again
# whenever the lock file changes. The end-to-end tests run it with the mock puppet.
node:
	@command -v node >/dev/null && command -v npm >/dev/null || { echo "the gateway needs Node 20+ and npm"; exit 1; }
	@node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' || \
	  { echo "the gateway needs Node 20+, found $$(node --version)"; exit 1; }

$(GATEWAY)/node_modules/.package-lock.json: $(GATEWAY)/package-lock.json $(GATEWAY)/package.json
	cd $(GATEWAY) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

gateway-deps: node $(GATEWAY)/node_modules/.package-lock.json

e2e-deps: gateway-deps

# The gateway in the foreground: the login QR code shows here; Ctrl-C stops it. It reads
# WECHATY_PUPPET_SERVICE_TOKEN (required), WECHATY_PUPPET_SERVICE_ENDPOINT (127.0.0.1:8788),
# WECHATY_PUPPET (wechaty-puppet-wechat4u) and WECHATY_GATEWAY_DATA_DIR (deploy/gateway/data).
gateway: gateway-deps
	cd $(GATEWAY) && exec node gateway.mjs

test: setup-test fonts gateway-deps browser postgres dovecot
	$(PY) -m bot kb test knowledge && $(PY) -m pytest -q

bench: setup
	$(PY) bench/match_bench.py

clean:
	rm -rf $(VENV) $(GATEWAY)/node_modules
