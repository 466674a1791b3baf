# syntax=docker/dockerfile:1
# The operator image (SPEC §8): slim, non-root, runs on a read-only root filesystem.
#
#   docker build -t ghcr.io/feinwaru/bandsy-operator:dev .
#   make image    # no Docker engine: buildah, on a local Debian 12 base given as PYTHON_IMAGE
#
# Stage 1 gathers the wheels of the dependencies, exactly as requirements/runtime.lock.txt pins
# them (make lock; pip checks every file's hash), and builds the package's; stage 2 installs them
# from a bind mount, so neither the wheels nor pip's cache end up in a layer, and removes pip,
# setuptools and wheel afterwards: the final image has no build tools.
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# The dependencies first: this layer is rebuilt only when the lock changes.
COPY requirements/runtime.lock.txt requirements/
RUN python -m pip wheel --require-hashes --wheel-dir /wheels -r requirements/runtime.lock.txt
# Then the package alone (.dockerignore keeps everything else out of the context).
COPY pyproject.toml README.md ./
COPY operator/ operator/
RUN python -m pip wheel --no-deps --wheel-dir /wheels .

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="bandsy-operator" \
      org.opencontainers.image.description="Kubernetes operator for the Bandsy platform" \
      org.opencontainers.image.source="https://github.com/feinwaru/bandsy-operator" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/tmp
# pg_dump and pg_restore for the backup Jobs (SPEC §11), from the base's distribution: a
# pg_dump older than the database server refuses to dump it (the Job says so), so choose a base
# whose PostgreSQL client is at least the servers' major version (Debian 12: 15, Debian 13: 17).
RUN apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -qy --no-install-recommends postgresql-client \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*
# The lock again, offline: nothing unlocked gets in, and the hashes are checked a second time
# (they match: every locked dependency ships wheels, which `pip wheel` copies unchanged).
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    --mount=type=bind,from=build,source=/src/requirements,target=/requirements \
    python -m pip install --no-index --find-links=/wheels --require-hashes \
      -r /requirements/runtime.lock.txt \
 && python -m pip install --no-index --find-links=/wheels --no-deps bandsy-operator \
 && python -m pip uninstall --yes pip setuptools wheel \
 && rm -rf /root/.cache \
 && groupadd --system --gid 65532 bandsy \
 && useradd --system --uid 65532 --gid 65532 --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin bandsy
# Numeric, so the kubelet can verify runAsNonRoot without reading /etc/passwd.
USER 65532:65532
WORKDIR /tmp
# 8080: /healthz (liveness, readiness); 9090: /metrics.
EXPOSE 8080 9090
ENTRYPOINT ["python", "-m", "bandsy_operator"]
