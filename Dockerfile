# syntax=docker/dockerfile:1
# Kilroy as a container. CPU by default:
#   docker build -t kilroy .
# CUDA (the torch build for CUDA 12.8; bitsandbytes is a dependency either way; run with --gpus all):
#   docker build -t kilroy:cuda --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 .
# Installs with scripts/install.sh, the same script README and CI use.
FROM python:3.11-slim

ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
# scale: the training queue (KILROY_TRAINING_QUEUE=postgres, `kilroy worker`); empty for the smallest image
ARG EXTRAS=scale
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HOME=/var/lib/kilroy/hf \
    KILROY_DATA_DIR=/var/lib/kilroy/data \
    KILROY_ADAPTERS_DIR=/var/lib/kilroy/adapters \
    KILROY_HTTP_HOST=0.0.0.0 \
    KILROY_HTTP_PORT=8080

WORKDIR /opt/kilroy
COPY pyproject.toml README.md LICENSE ./
COPY scripts/install.sh scripts/install.sh
COPY bot bot
COPY cogs cogs
RUN TORCH_INDEX="$TORCH_INDEX" sh scripts/install.sh /opt/venv "$EXTRAS" \
 && useradd --system --uid 10001 --user-group --home-dir /var/lib/kilroy --create-home kilroy \
 && mkdir -p /var/lib/kilroy/data /var/lib/kilroy/adapters /var/lib/kilroy/hf /var/lib/kilroy/backups \
 && chown -R kilroy:kilroy /var/lib/kilroy

USER kilroy
WORKDIR /var/lib/kilroy
# the database and generated data, the adapter versions, the model cache (gpt2: about 550 MB on first start)
VOLUME ["/var/lib/kilroy/data", "/var/lib/kilroy/adapters", "/var/lib/kilroy/hf"]
EXPOSE 8080
# readiness, not just a live process: 503 (unhealthy) while the gateway is down or the database is wedged
HEALTHCHECK --interval=30s --timeout=5s --start-period=5m --retries=3 \
  CMD ["/opt/venv/bin/python", "-c", "import os, sys, urllib.request; port = os.environ.get('KILROY_HTTP_PORT') or '8080'; sys.exit(0 if urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4).status == 200 else 1)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/opt/venv/bin/kilroy"]
CMD ["run"]
