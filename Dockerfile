# syntax=docker/dockerfile:1
#
# Image of the cutover GitHub Action. action.yml runs the PREBUILT image
# (docker://ghcr.io/cutover-dev/cutover:v1); .github/workflows/release.yml builds
# this file for linux/amd64 and linux/arm64 on every version tag and pushes it to
# GHCR. Users never build it in their workflows.
#
# Local build:  docker build -t cutover .
# Local run:    docker run --rm -v "$PWD:/work" -w /work cutover plan --manifest cutover.toml
#
# GitHub's rules for Docker container actions apply to this file:
# - No USER instruction, in either stage. A container action must run as the
#   default user (root): the runner bind-mounts the workspace (/github/workspace)
#   and the file-command files ($GITHUB_OUTPUT, $GITHUB_STEP_SUMMARY, ...) owned
#   by the runner's user, and a non-root user in the image cannot write to them.
# - No WORKDIR instruction, in either stage. The runner starts the container
#   with its working directory set to GITHUB_WORKSPACE (/github/workspace), and
#   GitHub's docs advise against WORKDIR; the build stage uses `cd /build` in
#   each RUN instead, so a grep for WORKDIR stays empty.

############################################################################
# Stage 1: build the release binary.
#
# The stage runs on the BUILD platform and cross-compiles for the target one:
# compiling octocrab/sqlx/reqwest under QEMU for arm64 takes many times longer
# than a native build. Only the final stage (apt-get) runs under QEMU.
FROM --platform=$BUILDPLATFORM rust:1-bookworm AS build

# Set by BuildKit (docker buildx) from --platform; empty with the legacy
# builder, where the target is the build machine's own architecture.
ARG TARGETARCH

# query!() macros, if used, read .sqlx/ instead of needing a live database.
ENV SQLX_OFFLINE=true

# Pick the Rust target triple for TARGETARCH, install a cross C toolchain when
# it differs from the build machine's (ring compiles C and assembly), and write
# the settings to /build.env for the cargo steps below.
RUN set -eux; \
    host="$(dpkg --print-architecture)"; \
    target="${TARGETARCH:-$host}"; \
    case "$target" in \
      amd64) triple=x86_64-unknown-linux-gnu;  gnu=x86_64-linux-gnu;  gccpkg=gcc-x86-64-linux-gnu ;; \
      arm64) triple=aarch64-unknown-linux-gnu; gnu=aarch64-linux-gnu; gccpkg=gcc-aarch64-linux-gnu ;; \
      *) echo "unsupported target architecture: $target" >&2; exit 1 ;; \
    esac; \
    echo "export TRIPLE=$triple" > /build.env; \
    if [ "$target" != "$host" ]; then \
      apt-get update; \
      apt-get install -y --no-install-recommends "$gccpkg" "libc6-dev-$target-cross"; \
      rm -rf /var/lib/apt/lists/*; \
      upper="$(echo "$triple" | tr 'a-z-' 'A-Z_')"; \
      lower="$(echo "$triple" | tr '-' '_')"; \
      { \
        echo "export CARGO_TARGET_${upper}_LINKER=$gnu-gcc"; \
        echo "export CC_${lower}=$gnu-gcc"; \
        echo "export AR_${lower}=$gnu-ar"; \
      } >> /build.env; \
    fi; \
    rustup target add "$triple"; \
    cat /build.env

# Dependencies first, with a dummy main: this layer is reused as long as
# Cargo.toml and Cargo.lock do not change, so a source-only change rebuilds
# only the cutover crate. (If Cargo.toml gains targets with explicit paths,
# such as build.rs or [[bench]] entries, stub them here too.)
COPY Cargo.toml Cargo.lock /build/
RUN set -eux; \
    . /build.env; \
    cd /build; \
    mkdir -p src; \
    echo 'fn main() {}' > src/main.rs; \
    cargo build --release --locked --target "$TRIPLE"; \
    rm -rf src

# The real sources. Drop the dummy crate's build artefacts so cargo cannot
# mistake them for up to date (COPY keeps the files' old modification times).
COPY src /build/src
RUN set -eux; \
    . /build.env; \
    cd /build; \
    rm -rf "target/$TRIPLE/release/.fingerprint/cutover-"* \
           "target/$TRIPLE/release/deps/cutover-"* \
           "target/$TRIPLE/release/deps/libcutover-"*; \
    find src -name '*.rs' -exec touch {} +; \
    cargo build --release --locked --target "$TRIPLE"; \
    install -D -m 0755 "target/$TRIPLE/release/cutover" /out/cutover

############################################################################
# Stage 2: the runtime image: Debian slim, CA certificates, a PostgreSQL
# client, git (rollback-functions-ref reads a tag's function folders with
# `git archive`), and the binary.
FROM debian:bookworm-slim

# pg_dump refuses to dump a server newer than itself, and Supabase runs
# PostgreSQL up to 17, while Debian bookworm only ships client 15. So the client
# comes from the PostgreSQL project's own apt repository (PGDG), verified with
# its signing key, as https://wiki.postgresql.org/wiki/Apt describes. curl is
# only needed to fetch the key and is purged in the same layer; the apt lists
# are removed to keep the image small.
ARG PG_MAJOR=17
RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends ca-certificates curl; \
    install -d /usr/share/postgresql-common/pgdg; \
    curl -fsSL --retry 3 -o /usr/share/postgresql-common/pgdg/apt.postgresql.org.asc \
      https://www.postgresql.org/media/keys/ACCC4CF8.asc; \
    . /etc/os-release; \
    echo "deb [signed-by=/usr/share/postgresql-common/pgdg/apt.postgresql.org.asc] https://apt.postgresql.org/pub/repos/apt ${VERSION_CODENAME}-pgdg main" \
      > /etc/apt/sources.list.d/pgdg.list; \
    apt-get update; \
    apt-get install -y --no-install-recommends "postgresql-client-${PG_MAJOR}" git; \
    apt-get purge -y --auto-remove curl; \
    apt-get clean; \
    rm -rf /var/lib/apt/lists/*; \
    "/usr/lib/postgresql/${PG_MAJOR}/bin/pg_dump" --version

# Call pg_dump, pg_restore and psql of this major directly rather than through
# Debian's pg_wrapper (a Perl script that picks a version per cluster).
ENV PATH="/usr/lib/postgresql/${PG_MAJOR}/bin:${PATH}"

COPY --from=build /out/cutover /usr/local/bin/cutover

# The runner appends the action's arguments (none: cutover reads INPUT_* itself).
ENTRYPOINT ["/usr/local/bin/cutover"]
