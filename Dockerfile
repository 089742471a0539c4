# The changeops worker image: changeops on Pulumi's official image
# (pulumi/pulumi), which ships the Pulumi CLI with every language host and
# its runtime (Node.js with npm, pnpm, yarn and bun; Python with pip,
# poetry and uv; Go; .NET; Java; YAML), git and the cloud CLIs, so that
# TypeScript, JavaScript, Python, Go, .NET, Java and YAML programs run as
# they do on a developer's machine. It runs as the non-root user
# changeops. docker-compose.yml runs it as `worker` and as the one-shot
# `setup`.
#
# PULUMI_VERSION is the CLI's version: the pinned one changeops' tests run
# (internal/pulumienv.PulumiVersion, checked by tests/compose_test.go).
# Another one at or above pulumi.min_version works too:
#   docker build --build-arg PULUMI_VERSION=3.274.1 .
ARG PULUMI_VERSION=3.259.0

# Build stage: changeops alone (the Pulumi CLI comes from the runtime
# image). The Go module and build caches are cache mounts.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /opt/changeops/bin/changeops .

FROM pulumi/pulumi:${PULUMI_VERSION}
# The official image runs as root with its tools' caches under /root: the
# user changeops gets a home of its own in the data volume, and the
# language toolchains' caches there too (Go's module and build caches,
# npm's, pip's). The runtimes themselves live under /usr/local/share and
# /usr/local/go, readable by every user. git (verification checks, people
# debugging) and curl (the health check) come with the image.
RUN useradd --system --uid 10001 --home-dir /var/lib/changeops --shell /usr/sbin/nologin changeops && \
    mkdir -p /var/lib/changeops /etc/changeops && chown changeops: /var/lib/changeops
COPY --from=build /opt/changeops/bin /opt/changeops/bin
# The worker finds the image's CLI (/usr/bin/pulumi) on PATH; pulumi.cli
# in the config names another. CHANGEOPS_TOOLS holds no Pulumi toolchain
# here: changeops' own demo provider is not in the image.
ENV CHANGEOPS_TOOLS=/opt/changeops \
    PATH=/opt/changeops/bin:$PATH \
    HOME=/var/lib/changeops \
    XDG_CONFIG_HOME=/var/lib/changeops/.config \
    XDG_CACHE_HOME=/var/lib/changeops/.cache \
    GOPATH=/var/lib/changeops/go \
    PULUMI_SKIP_UPDATE_CHECK=true
USER changeops
WORKDIR /var/lib/changeops
# Data (git cache, workspaces, PULUMI_HOME with its plugins, file:// state)
# lives here.
VOLUME /var/lib/changeops
# The webhook, Slack interactions, /metrics, /healthz and /readyz.
EXPOSE 8088
# /healthz answers while the process serves; /readyz also needs Temporal
# and polling, which an orchestrator's readiness probe should use instead.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD curl -fsS http://127.0.0.1:8088/healthz || exit 1
# The official image's entrypoint is pulumi.
ENTRYPOINT ["/opt/changeops/bin/changeops"]
CMD ["worker", "--config", "/etc/changeops/changeops.yaml"]
