# syntax=docker/dockerfile:1
#
# X-Ray image: the `xray` binary on a distroless base, run as a
# non-root user. The same image runs every role; the subcommand picks one:
#   docker run IMAGE serve            collector + dashboard API in one process
#   docker run IMAGE collector        OTLP receivers on 4317 (gRPC) and 4318 (HTTP)
#   docker run IMAGE dashboard-api    HTTP API on 8080
#   docker run IMAGE migrate          apply schema migrations and exit
#   docker run IMAGE config           print the effective configuration
# Build: docker build -t xray .

ARG RUST_VERSION=1.95.0

FROM rust:${RUST_VERSION}-slim-bookworm AS build
ARG RUST_VERSION
# The toolchain file asks for rustfmt and clippy, which a release build does
# not need: use the image's toolchain as it is.
ENV RUSTUP_TOOLCHAIN=${RUST_VERSION} \
    CARGO_TERM_COLOR=never
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p xray \
    && install -D -m 0755 target/release/xray /out/xray \
    && install -d -m 0755 /out/data

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/xray /usr/local/bin/xray
COPY --from=build --chown=65532:65532 /out/data /var/lib/xray
# Data of the embedded SQLite store (`xray serve` with the default config)
# goes to ./xray-data under the working directory.
WORKDIR /var/lib/xray
USER 65532:65532
# Listen on every interface inside the container (the built-in defaults are
# loopback only). These variables outrank a config file, as every XRAY_*
# variable does: to listen elsewhere, set them (`-e XRAY_API__ADDR=...`).
ENV XRAY_RECEIVERS__OTLP__GRPC_ADDR=0.0.0.0:4317 \
    XRAY_RECEIVERS__OTLP__HTTP_ADDR=0.0.0.0:4318 \
    XRAY_API__ADDR=0.0.0.0:8080
EXPOSE 4317 4318 8080
ENTRYPOINT ["/usr/local/bin/xray"]
CMD ["serve"]
