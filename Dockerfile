# syntax=docker/dockerfile:1
#
# chimney's image: the release binary, the dashboard (docs/) and curl for
# the health check, on debian-slim, running as an unprivileged user.
#
#   docker buildx build --platform linux/amd64,linux/arm64 \
#     --build-arg CHIMNEY_VERSION="0.1.0+$(git rev-parse HEAD)" --build-arg WGMESH_VERSION=v1.2.3 .
#
# Multi-arch without emulating rustc: the builder stage always runs on the
# build machine's own platform ($BUILDPLATFORM) and cross-compiles for the
# target ($TARGETARCH) with Debian's cross gcc, which links the binary and
# compiles ring's C and assembly. Only the few RUN steps of the runtime
# stage run emulated (QEMU) for a foreign platform.
#
# Reproducible: `--locked` builds exactly Cargo.lock, on a pinned Rust
# toolchain and Debian release.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM --platform=$BUILDPLATFORM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS builder
ARG TARGETARCH
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /build

# The Rust target for $TARGETARCH and, when it is not the build machine's
# architecture, the cross toolchain; /build/cross.env holds the settings the
# cargo steps below source. The Debian cross packages are not version-pinned:
# the suite is pinned through the base image, and the archive keeps only the
# current version of each package.
# hadolint ignore=DL3008
RUN arch="${TARGETARCH:-$(dpkg --print-architecture)}"; \
    case "$arch" in \
      amd64) target=x86_64-unknown-linux-gnu; gnu=x86_64-linux-gnu ;; \
      arm64) target=aarch64-unknown-linux-gnu; gnu=aarch64-linux-gnu ;; \
      *) echo "unsupported TARGETARCH: $arch (amd64 and arm64 are)" >&2; exit 1 ;; \
    esac; \
    rustup target add "$target"; \
    echo "export CARGO_BUILD_TARGET=$target" >/build/cross.env; \
    if [ "$arch" != "$(dpkg --print-architecture)" ]; then \
      apt-get update; \
      apt-get install -y --no-install-recommends "gcc-${gnu//_/-}" "libc6-dev-${arch}-cross"; \
      rm -rf /var/lib/apt/lists/*; \
      triple="${target//-/_}"; \
      { echo "export CARGO_TARGET_${triple^^}_LINKER=${gnu}-gcc"; \
        echo "export CC_${triple}=${gnu}-gcc"; \
        echo "export AR_${triple}=${gnu}-ar"; } >>/build/cross.env; \
    fi

# Dependencies first, in a layer of their own: built against a stub crate,
# so this layer is reused (and cached by CI) until Cargo.toml or Cargo.lock
# changes. The test doubles (testkit/, a workspace member and a
# dev-dependency) are never built here, but cargo reads their manifest: a
# stub library stands in for their sources.
COPY Cargo.toml Cargo.lock ./
COPY testkit/Cargo.toml testkit/
RUN mkdir src testkit/src \
    && echo 'fn main() {}' >src/main.rs \
    && touch src/lib.rs testkit/src/lib.rs \
    && . /build/cross.env \
    && cargo build --release --locked --bin chimney \
    && rm -rf src

# Build-time version injection (src/bootstrap/version.rs reads both with
# option_env!). Declared after the dependency layer so a new version does
# not rebuild the dependencies; build arguments are in the environment of
# RUN, which is what the compiler sees. One left empty is unset, so the
# crate version (and `dev` for wgmesh) apply instead of an empty string.
ARG CHIMNEY_VERSION=""
ARG WGMESH_VERSION=""
COPY src ./src
RUN . /build/cross.env \
    && if [ -z "$CHIMNEY_VERSION" ]; then unset CHIMNEY_VERSION; fi \
    && if [ -z "$WGMESH_VERSION" ]; then unset WGMESH_VERSION; fi \
    && touch src/main.rs src/lib.rs \
    && cargo build --release --locked --bin chimney \
    && install -D "target/$CARGO_BUILD_TARGET/release/chimney" /out/chimney

FROM debian:${DEBIAN_RELEASE}-slim AS runtime
# ca-certificates: rustls-platform-verifier trusts the system store when
# calling GitHub. curl: the HEALTHCHECK (distroless has no HTTP client, and
# chimney has no health subcommand); also handy with `docker exec`.
# Not version-pinned, as above.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 chimney \
    && useradd --system --uid 10001 --gid chimney --home-dir /nonexistent \
       --no-create-home --shell /usr/sbin/nologin chimney

# The dashboard is served from ./docs (CHIMNEY_DOCS' default) relative to
# the working directory; root-owned, so the service can read but not
# change it.
WORKDIR /app
COPY docs ./docs
COPY --from=builder /out/chimney /usr/local/bin/chimney

ARG CHIMNEY_VERSION=""
LABEL org.opencontainers.image.title="chimney" \
      org.opencontainers.image.description="Caching GitHub API proxy and origin server for the project dashboard" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.version="${CHIMNEY_VERSION}"

# A numeric user, so runtimes that enforce non-root can verify it.
USER 10001:10001
EXPOSE 8080
# The port comes from CHIMNEY_ADDR when it is set (compose sets
# 0.0.0.0:8080). /readyz answers 200 while chimney takes traffic, whatever
# the state of Dragonfly, and 503 from SIGTERM on (while it still serves
# for CHIMNEY_SHUTDOWN_GRACE), so the container shows as unhealthy as soon
# as it is being stopped.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["/bin/sh", "-c", "port=\"${CHIMNEY_ADDR##*:}\"; curl -fsS --max-time 2 -o /dev/null \"http://127.0.0.1:${port:-8080}/readyz\" || exit 1"]
# chimney handles SIGTERM itself (turns /readyz to 503, keeps serving for
# CHIMNEY_SHUTDOWN_GRACE, drains requests, flushes telemetry, exits 0), so
# it runs as PID 1 without an init.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/chimney"]
