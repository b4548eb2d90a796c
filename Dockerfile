# The bot for WeChat: `python -m bot run` against a Wechaty puppet-service gateway.
# Settings come from the environment (BOT_*, WECHATY_PUPPET_SERVICE_TOKEN/ENDPOINT); state lives on
# the /data volume (or, with BOT_DATABASE_URL=postgresql://..., in the shared database: deploy/compose.yaml);
# the appeal key is expected at /keys/appeal.key (mount a secret) or BOT_APPEAL_KEY. The knowledge dir
# belongs to the bot user: the web console writes taught phrasings to knowledge/learned.yaml.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    BOT_DATA_DIR=/data \
    BOT_KEY_FILE=/keys/appeal.key \
    BOT_KNOWLEDGE_DIR=/app/knowledge

WORKDIR /app
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY knowledge ./knowledge
RUN pip install --no-cache-dir '.[ocr]' \
    && useradd --system --uid 10001 --home-dir /app bot \
    && mkdir -p /data /keys && chown bot:bot /data /keys && chmod 0700 /data /keys \
    && chown -R bot:bot /app/knowledge

USER bot
VOLUME ["/data"]
CMD ["python", "-m", "bot", "run"]
