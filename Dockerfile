# syntax=docker/dockerfile:1
#
# residency-proxy container image.
#
#   docker build -t residency-proxy:0.1.0 \
#       --build-arg RESIDENCY_PROXY_COMMIT="$(git rev-parse --short HEAD)" .
#   docker run --rm -p 8080:8080 -p 127.0.0.1:9090:9090 residency-proxy:0.1.0
#
# Builder: the dependencies are compiled in a layer of their own, from
# Cargo.toml and Cargo.lock only, so that a change to src/ rebuilds the crate
# and not its ~200 dependencies. Runtime: debian-slim, non-root, with the
# shipped config and GeoIP database. See docs/operations.md.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS builder
WORKDIR /build

# make, for jemalloc (the proxy's allocator, built from source by
# tikv-jemalloc-sys); the slim image has gcc but no make.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends make \
    && rm -rf /var/lib/apt/lists/*

# Dependency layer: the manifest, the lock file and the bench sources the
# manifest names (cargo reads every target's path), with a stub crate;
# rebuilt only when these change.
COPY Cargo.toml Cargo.lock ./
COPY benches/*.rs ./benches/
RUN mkdir src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && cargo build --release --locked --bin residency-proxy \
    && rm -rf src target/release/.fingerprint/residency-proxy-*

# The crate itself. The stub's fingerprint is gone, so cargo rebuilds it
# whatever the timestamps of the copied files. The commit shown by
# residency_build_info: docker build --build-arg
# RESIDENCY_PROXY_COMMIT=$(git rev-parse --short HEAD) . ("unknown" if unset).
ARG RESIDENCY_PROXY_COMMIT=unknown
COPY src ./src
RUN RESIDENCY_PROXY_COMMIT="${RESIDENCY_PROXY_COMMIT}" cargo build --release --locked --bin residency-proxy \
    && install -D -m 0755 target/release/residency-proxy /out/residency-proxy


FROM debian:${DEBIAN_RELEASE}-slim

LABEL org.opencontainers.image.title="residency-proxy" \
      org.opencontainers.image.description="Reverse proxy enforcing EEA data residency in front of S3-compatible storage" \
      org.opencontainers.image.licenses="Apache-2.0 AND CC-BY-4.0"

# A fixed uid/gid (10001), matched by runAsUser in deploy/kubernetes. The
# state directory holds the audit trail: the only path the proxy writes.
RUN groupadd --system --gid 10001 residency \
    && useradd --system --uid 10001 --gid residency --no-create-home \
       --home-dir /var/lib/residency-proxy --shell /usr/sbin/nologin residency \
    && install -d -o residency -g residency -m 0750 \
       /var/lib/residency-proxy /var/lib/residency-proxy/audit

# CA roots for https:// upstreams without [route.tls] ca (read by
# rustls-native-certs), taken from the builder so the runtime stage needs no
# package manager run.
COPY --from=builder /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=builder /out/residency-proxy /usr/local/bin/residency-proxy
COPY --chmod=0755 deploy/docker/healthcheck /usr/local/bin/residency-proxy-healthcheck
COPY deploy/docker/residency-proxy.toml /etc/residency-proxy/residency-proxy.toml
COPY config/residency-proxy.toml /usr/share/doc/residency-proxy/residency-proxy.toml
COPY geodata/ /usr/share/residency-proxy/geodata/

USER 10001:10001
WORKDIR /var/lib/residency-proxy
VOLUME ["/var/lib/residency-proxy"]

# 8080 HTTP, 8443 HTTPS (when [server] tls_listen is set), 9090 admin.
EXPOSE 8080 8443 9090

# The image has no curl: the check speaks HTTP/1.1 to /healthz through
# bash's /dev/tcp (deploy/docker/healthcheck). Kubernetes ignores it and
# uses the probes of deploy/kubernetes instead.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/residency-proxy-healthcheck", "127.0.0.1:9090"]

# Exec form: the proxy is PID 1 and receives SIGTERM itself; it stops
# accepting, drains for [server] shutdown_grace (30 s by default) and exits
# 0. Give `docker stop` more than that: docker stop -t 40.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/residency-proxy"]
CMD ["run", "--config", "/etc/residency-proxy/residency-proxy.toml"]
