# confserver: pages, signaling, admin API, metrics and the media forwarding unit in one process.
# Build:  docker build -t confserver .
# Run:    see docker-compose.yml and docs/DEPLOY.md (a certificate, a config file, the media port).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: install the package and its dependencies (binary wheels) under /install -----------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY confserver ./confserver
COPY confctl ./confctl
COPY sfu ./sfu
COPY web ./web
RUN pip install --prefix=/install . \
 && find /install -name '__pycache__' -prune -exec rm -rf {} +

# --- runtime: the installed package only; no sources, no build tools, no keys ------------------
FROM ${PYTHON_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    HOME=/var/lib/confserver \
    CONF_SERVER_HOST=0.0.0.0 \
    CONF_SERVER_PORT=8443 \
    CONF_SFU_UDP_PORT=7882
COPY --from=build /install /usr/local
RUN groupadd --system --gid 10001 confserver \
 && useradd --system --uid 10001 --gid confserver --home-dir /var/lib/confserver \
        --shell /usr/sbin/nologin confserver \
 && install -d -o confserver -g confserver -m 0700 /var/lib/confserver \
 && install -d -m 0755 /etc/confserver
USER confserver:confserver
WORKDIR /var/lib/confserver

# 8443/tcp: pages, /ws and /api/v1 (HTTPS). 7882/udp: all media (sfu.udp_port).
# 9464/tcp: Prometheus metrics (metrics.host is loopback unless set: CONF_METRICS_HOST=0.0.0.0).
EXPOSE 8443/tcp 7882/udp 9464/tcp

# Ready means: serving, and its store answers (503 when Redis is unreachable or came back empty).
# The certificate names the public host, not 127.0.0.1, so this loopback check does not verify it.
# HEALTHCHECK_URL overrides the address (http://127.0.0.1:PORT/readyz behind a TLS proxy).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, ssl, urllib.request; urllib.request.urlopen(os.environ.get('HEALTHCHECK_URL', 'https://127.0.0.1:8443/readyz'), timeout=4, context=ssl._create_unverified_context())"]

STOPSIGNAL SIGTERM
ENTRYPOINT ["confserver"]
CMD ["--config", "/etc/confserver/confserver.toml"]
