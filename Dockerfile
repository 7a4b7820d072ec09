# syntax=docker/dockerfile:1.7
# The operator as a static (musl) binary on a distroless base, running as a non-root user.
#   docker build -t databricks-token-operator .
# Each platform builds natively (docker buildx --platform linux/amd64,linux/arm64 uses emulation
# for the other), which avoids a cross linker.

FROM rust:1.95-bookworm AS builder
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add "$(uname -m)-unknown-linux-musl"
WORKDIR /src
COPY . .
# Cache mounts keep the registry and target dir between builds without baking them into a layer.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    target="$(uname -m)-unknown-linux-musl" \
 && cargo build --release --locked --target "$target" --bin databricks-token-operator --bin kubectl-dbtoken \
 && install -D -m 0755 "target/$target/release/databricks-token-operator" /out/databricks-token-operator \
 && install -D -m 0755 "target/$target/release/kubectl-dbtoken" /out/kubectl-dbtoken

FROM gcr.io/distroless/static-debian12:nonroot
LABEL org.opencontainers.image.title="databricks-token-operator" \
      org.opencontainers.image.description="Mints Databricks personal access tokens into Kubernetes Secrets and rotates them" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /out/databricks-token-operator /usr/local/bin/databricks-token-operator
# The kubectl plugin is released beside the image; it ships inside it too, for
# `docker create` + `docker cp` when no release download is at hand.
COPY --from=builder /out/kubectl-dbtoken /usr/local/bin/kubectl-dbtoken
# 65532 = distroless "nonroot"; numeric so runAsNonRoot can verify it.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/databricks-token-operator"]
