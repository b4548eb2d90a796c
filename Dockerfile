# The bot for WeChat: `python -m bot run` against a Wechaty puppet-service gateway.
# Settings come from the environment (BOT_*, WECHATY_PUPPET_SERVICE_TOKEN/ENDPOINT); state lives on
# the /data volume (or, with BOT_DATABASE_URL=postgresql://..., in the shared database: deploy/compose.yaml);
# the appeal key is expected at /keys/appeal.key (mount a secret) or BOT_APPEAL_KEY. The knowledge dir
# belongs to the bot user: the web console writes taught phrasings to knowledge/learned.yaml.
#
# Two stages: `build` makes the wheels, installs them into a virtualenv (/opt/venv) and slims it
# (deploy/slim-venv.sh); the final stage copies only that virtualenv and the knowledge files: no
# compiler, pip, wheel or pip caches, tests. Variants (sizes: docs/deploy.md, bench/image_size.py):
#   docker build -t dayu-bot .                        # with OCR of screenshots (rapidocr, headless OpenCV)
#   docker build --build-arg OCR=0 -t dayu-bot:no-ocr .   # without: screenshots go to a person
ARG BASE=python:3.11-slim

FROM ${BASE} AS build
ARG OCR=1
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
# binutils: `strip` for slim-venv.sh (this stage only)
RUN apt-get update \
    && apt-get install -y --no-install-recommends binutils \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bot ./bot
RUN case "$OCR" in 1) extras='[ocr]' ;; 0) extras='' ;; *) echo "OCR must be 1 or 0, not $OCR" >&2; exit 1 ;; esac \
    && python -m venv /opt/venv \
    && /opt/venv/bin/pip wheel --quiet --use-pep517 --wheel-dir /wheels ".$extras" \
    && /opt/venv/bin/pip install --quiet --no-compile --no-index --find-links /wheels "dayu-verify-bot$extras"
COPY deploy/slim-venv.sh /usr/local/bin/slim-venv
RUN sh /usr/local/bin/slim-venv /opt/venv "$OCR"

FROM ${BASE}
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    BOT_DATA_DIR=/data \
    BOT_KEY_FILE=/keys/appeal.key \
    BOT_KNOWLEDGE_DIR=/app/knowledge \
    BOT_METRICS_PORT=9108

RUN useradd --system --uid 10001 --home-dir /app bot \
    && mkdir -p /app /data /keys && chown bot:bot /data /keys && chmod 0700 /data /keys
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY --chown=bot:bot knowledge ./knowledge

USER bot
VOLUME ["/data"]
# `python -m bot run` answers /healthz on metrics_port (BOT_METRICS_PORT); urllib raises (exit 1)
# on a refused connection, a timeout or a non-2xx answer.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('BOT_METRICS_PORT', '9108'), timeout=4)"]
CMD ["python", "-m", "bot", "run"]
