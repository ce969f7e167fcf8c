# magento-edge: the API edge as a container (README "Deploy"). Built from this repository:
#   docker build -t magento-edge .
# config.toml and policies/ are mounted read-only at /etc/magento-edge; the writable
# /var/lib/magento-edge holds the SQLite key store if the config uses one.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY proxy ./proxy
COPY magento_standin ./magento_standin
# The redis extra: Redis key store, rate limits and idempotency shared by every replica.
# DL3013 (pin versions): "." is this repository, not a package from an index.
# hadolint ignore=DL3013
RUN pip install --no-cache-dir ".[redis]" \
    && rm -rf /src \
    && useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin edge \
    && mkdir -p /etc/magento-edge /var/lib/magento-edge \
    && chown edge:edge /var/lib/magento-edge

WORKDIR /var/lib/magento-edge
USER 10001:10001
ENV MAGENTO_EDGE_CONFIG=/etc/magento-edge/config.toml
# 8080: the API ([server] port); 9901: health, readiness, metrics ([admin] port, which
# must listen on 0.0.0.0 in a container for the probes to reach it: [admin] host = "0.0.0.0").
EXPOSE 8080 9901
# No curl in the slim image: the interpreter the edge runs on does the probe.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9901/healthz', timeout=2)"]
ENTRYPOINT ["magento-edge", "serve"]
