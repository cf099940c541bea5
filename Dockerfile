# The appliance: Postgres 15, the migration, the web app and two workers under supervisord, in one
# container. Everything it does at run time is in scripts/appliance/entrypoint, the same script
# that scripts/run starts on a host (tests/appliance boots it there, since no Docker runs in CI).
#
#   docker build -t durable-agent-engine .
#   docker run --rm -p 8080:8080 -v agent-data:/data durable-agent-engine
FROM python:3.11-slim-bookworm

# APP_USER: the entrypoint starts as root, hands /data to this user and drops to it.
ENV APP_DIR=/app \
    DATA_DIR=/data \
    APP_USER=app \
    PORT=8080 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# Debian's PostgreSQL 15, without the cluster its package would create: the entrypoint creates
# the appliance's own under /data on first boot.
RUN apt-get update \
    && apt-get install -y --no-install-recommends postgresql-common=248* \
    && sed -i 's/^#\?create_main_cluster.*/create_main_cluster = false/' \
        /etc/postgresql-common/createcluster.conf \
    && apt-get install -y --no-install-recommends postgresql-15=15.* \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --create-home --home-dir /home/app \
        --shell /usr/sbin/nologin app

WORKDIR /app

# The virtualenv sits where scripts/run puts it on a host: <repo>/.venv.
COPY requirements.txt ./
RUN python -m venv .venv \
    && .venv/bin/pip install --no-cache-dir --disable-pip-version-check -r requirements.txt

# The code stays root's and read-only to the app user.
COPY . .

EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["/app/scripts/appliance/healthcheck"]
ENTRYPOINT ["/app/scripts/appliance/entrypoint"]
