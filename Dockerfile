# tokenmeter proxy image: `tokenmeter serve` on 0.0.0.0:8080, non-root, health-checked on /healthz.
# Build: docker build -t tokenmeter .   Run: docker run -p 8080:8080 tokenmeter
# Two stages: the wheel and its dependencies are built into a venv, and only that venv is copied
# into a slim runtime image (no compiler, no pip cache, no source tree).

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/tokenmeter
COPY pyproject.toml README.md ./
COPY proxy ./proxy
COPY migrations ./migrations
RUN /opt/tokenmeter/bin/pip install .

FROM python:3.11-slim
LABEL org.opencontainers.image.title="tokenmeter" \
      org.opencontainers.image.description="Metering reverse proxy for LLM APIs" \
      org.opencontainers.image.licenses="Apache-2.0"
# A fixed numeric uid so Kubernetes can check runAsNonRoot without a passwd lookup.
RUN groupadd --system --gid 10001 tokenmeter \
 && useradd --system --uid 10001 --gid tokenmeter --home-dir /var/lib/tokenmeter --no-create-home tokenmeter \
 && install -d -o tokenmeter -g tokenmeter /var/lib/tokenmeter /var/lib/tokenmeter/spool
COPY --from=build /opt/tokenmeter /opt/tokenmeter
ENV PATH=/opt/tokenmeter/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TOKENMETER_HOST=0.0.0.0 \
    TOKENMETER_PORT=8080 \
    TOKENMETER_SPOOL_DIR=/var/lib/tokenmeter/spool \
    TOKENMETER_DATABASE_URL=sqlite+aiosqlite:////var/lib/tokenmeter/tokenmeter.db
WORKDIR /var/lib/tokenmeter
USER 10001:10001
# The spool holds events the database refused; it must outlive the container.
VOLUME ["/var/lib/tokenmeter/spool"]
EXPOSE 8080
# slim has no curl: Python's own urllib asks /healthz (exit 1 on refusal, timeout or non-2xx).
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4).status != 200)"]
ENTRYPOINT ["tokenmeter"]
CMD ["serve"]
