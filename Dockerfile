# The changeops worker image: changeops and its pinned Pulumi toolchain
# (CLI, YAML language host, changeops' provider), built from source as
# scripts/toolchain builds them, on a small Debian runtime as a non-root
# user. docker-compose.yml runs it as `worker` and as the one-shot `setup`.
#
# Build stage: the Go module and build caches are cache mounts, so a
# rebuild after a source change recompiles changeops only (the Pulumi CLI
# takes about 11 minutes cold).
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CHANGEOPS_TOOLS=/opt/changeops scripts/toolchain --runtime && \
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /opt/changeops/bin/changeops .

FROM debian:bookworm-slim
# git for verification checks and people debugging in the container,
# ca-certificates for HTTPS remotes and Slack, curl for the health check.
RUN apt-get update && \
    apt-get install -y --no-install-recommends git ca-certificates curl && \
    rm -rf /var/lib/apt/lists/* && \
    useradd --system --uid 10001 --home-dir /var/lib/changeops --shell /usr/sbin/nologin changeops && \
    mkdir -p /var/lib/changeops /etc/changeops && chown changeops: /var/lib/changeops
COPY --from=build /opt/changeops/bin /opt/changeops/bin
ENV CHANGEOPS_TOOLS=/opt/changeops \
    PATH=/opt/changeops/bin:$PATH \
    PULUMI_SKIP_UPDATE_CHECK=true
USER changeops
WORKDIR /var/lib/changeops
# Data (git cache, workspaces, PULUMI_HOME, file:// state) lives here.
VOLUME /var/lib/changeops
# The webhook, Slack interactions, /metrics, /healthz and /readyz.
EXPOSE 8088
# /healthz answers while the process serves; /readyz also needs Temporal
# and polling, which an orchestrator's readiness probe should use instead.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD curl -fsS http://127.0.0.1:8088/healthz || exit 1
ENTRYPOINT ["/opt/changeops/bin/changeops"]
CMD ["worker", "--config", "/etc/changeops/changeops.yaml"]
