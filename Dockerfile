# The appliance: Postgres 15, the migration, the web app and two workers under supervisord, in one
# container. Everything it does at run time is in scripts/appliance/entrypoint, the same script
# that scripts/run starts on a host (tests/appliance boots it there, since no Docker runs in CI).
#
#   docker build -t durable-agent .
#   docker run --rm -p 8080:8080 -v dae-data:/data --stop-timeout 30 durable-agent
# (--stop-timeout: the stop sequence takes up to 28 s, supervisord.conf; docker's default is 10 s.)
# scripts/image-test builds and boots it (docker, else podman) and prints its size.
# BASE_IMAGE: scripts/image-test passes a stand-in built from Debian's mirror when no registry
# can be reached; anyone else builds on the official image.
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

# APP_USER: the entrypoint starts as root, hands /data to this user and drops to it.
ENV APP_DIR=/app \
    DATA_DIR=/data \
    APP_USER=app \
    PORT=8080 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# Debian's PostgreSQL 15, without the cluster its package would create: the entrypoint creates
# the appliance's own under /data on first boot. dpkg is told not to unpack what the appliance
# never uses, so its database stays whole (apt keeps working in the image): LLVM and the bitcode
# of PostgreSQL's JIT (jit = off, scripts/appliance/prepare-postgres; ~150 MB), documentation,
# manual pages (not PostgreSQL's own: update-alternatives links them) and translations. apt's
# downloaded packages go too (the official base image does that itself; a stand-in may not).
RUN printf '%s\n' \
        'path-exclude=/usr/lib/*/libLLVM-*' 'path-exclude=/usr/lib/*/libz3.so*' \
        'path-exclude=/usr/lib/postgresql/*/lib/llvmjit*' 'path-exclude=/usr/lib/postgresql/*/lib/bitcode/*' \
        'path-exclude=/usr/share/doc/*' 'path-include=/usr/share/doc/*/copyright' \
        'path-exclude=/usr/share/man/*' \
        'path-exclude=/usr/share/locale/*' 'path-include=/usr/share/locale/locale.alias' \
        >/etc/dpkg/dpkg.cfg.d/durable-agent-slim \
    && apt-get update \
    && apt-get install -y --no-install-recommends postgresql-common=248* \
    && sed -i 's/^#\?create_main_cluster.*/create_main_cluster = false/' \
        /etc/postgresql-common/createcluster.conf \
    && apt-get install -y --no-install-recommends postgresql-15=15.* \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --create-home --home-dir /home/app \
        --shell /usr/sbin/nologin app

WORKDIR /app

# The virtualenv sits where scripts/run puts it on a host: <repo>/.venv. pip and setuptools leave
# it once the requirements are in (nothing imports them at run time; ~25 MB). The bytecode stays:
# compiled once here instead of by every process on every boot (PYTHONDONTWRITEBYTECODE).
COPY requirements.txt ./
RUN python -m venv .venv \
    && .venv/bin/pip install --no-cache-dir --disable-pip-version-check -r requirements.txt \
    && .venv/bin/pip uninstall --yes --disable-pip-version-check pip setuptools

# The code stays root's and read-only to the app user.
COPY . .

EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["/app/scripts/appliance/healthcheck"]
ENTRYPOINT ["/app/scripts/appliance/entrypoint"]
