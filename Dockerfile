# Builds changeops and its pinned Pulumi toolchain from source, as
# scripts/toolchain does, and runs `changeops worker`.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY . .
RUN CHANGEOPS_TOOLS=/opt/changeops scripts/toolchain && \
    rm /opt/changeops/bin/temporal && \
    go build -trimpath -o /opt/changeops/bin/changeops .

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends git ca-certificates curl && \
    rm -rf /var/lib/apt/lists/* && useradd --system --home /var/lib/changeops changeops && \
    mkdir -p /var/lib/changeops && chown changeops /var/lib/changeops
COPY --from=build /opt/changeops/bin /opt/changeops/bin
ENV CHANGEOPS_TOOLS=/opt/changeops
USER changeops
WORKDIR /var/lib/changeops
HEALTHCHECK CMD curl -fsS http://127.0.0.1:8088/healthz || exit 1
ENTRYPOINT ["/opt/changeops/bin/changeops"]
CMD ["worker", "--config", "/etc/changeops/changeops.yaml"]
