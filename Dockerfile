# syntax=docker/dockerfile:1
# The xweg image: `xweg registry serve`, `xweg gateway serve` and every other command.
#   docker build -t xweg .
#   docker run --read-only --tmpfs /tmp -v xweg-data:/var/lib/xweg \
#       -v ./server:/etc/xweg/config:ro xweg gateway serve --config /etc/xweg/config/server.toml
# It runs as uid 10001 with a read-only root filesystem: the only places it writes are
# the data volume /var/lib/xweg and /tmp. deploy/kubernetes runs it that way.

# Builder and runtime start from the same image, so that the virtual environment's
# interpreter link points at the same Python in both.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY core ./core
COPY trust ./trust
COPY adapters ./adapters
COPY registry ./registry
COPY gateway ./gateway
COPY xweg ./xweg
# Every dependency comes as a wheel (--only-binary): nothing is compiled, so neither
# stage needs a compiler. pip compiles the .pyc files here, because at run time the
# code is read-only.
RUN python -m pip wheel --no-deps --wheel-dir /wheels . \
    && python -m venv /opt/xweg \
    && /opt/xweg/bin/pip install --only-binary=:all: /wheels/xweg-*.whl

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="xweg" \
      org.opencontainers.image.description="A federated data-exchange layer for public administrations" \
      org.opencontainers.image.licenses="EUPL-1.2"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH="/opt/xweg/bin:${PATH}"
RUN groupadd --system --gid 10001 xweg \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/xweg --no-create-home \
        --shell /usr/sbin/nologin xweg \
    && install -d -o 10001 -g 10001 -m 0700 /var/lib/xweg
# Owned by root: the service user can read and run the code, not change it.
COPY --from=builder /opt/xweg /opt/xweg
WORKDIR /var/lib/xweg
VOLUME ["/var/lib/xweg"]
# Registry 8080; security server: client 5510, peers 5511, management 5588
# (the ports of deploy/kubernetes).
EXPOSE 8080 5510 5511 5588
# Numeric, so that Kubernetes can check runAsNonRoot without reading /etc/passwd.
USER 10001:10001
ENTRYPOINT ["xweg"]
CMD ["--help"]
