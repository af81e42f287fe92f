# syntax=docker/dockerfile:1
# promql-frontend container image: a release build on Debian 12, run on distroless.
#
#   docker build -t promql-frontend:0.1.0 .
#   docker run --rm -p 9095:9095 -e PROMQL_FRONTEND_DOWNSTREAM_URL=http://thanos-query:10902 \
#     promql-frontend:0.1.0
#
# The default config is config.example.toml (every default), overridable with
# PROMQL_FRONTEND_* variables; on Kubernetes the ConfigMap is mounted over
# /etc/promql-frontend (see k8s/). Arguments given to `docker run` replace CMD.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# Cache mounts keep the registry and the target directory between builds, so a code
# change does not download and compile every dependency again. The binary is copied out
# of the mounted target directory, which is not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin promql-frontend \
    && cp target/release/promql-frontend /promql-frontend

# Distroless "cc": glibc, libgcc and CA certificates (for https:// queriers), no shell,
# no package manager. Same Debian release as the build stage, so the glibc matches.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /promql-frontend /promql-frontend
COPY config.example.toml /etc/promql-frontend/config.toml
# The "nonroot" user, by number: Kubernetes can only verify runAsNonRoot against a
# numeric user.
USER 65532:65532
# Sanity check while building, in the runtime image itself (exec form: no shell needed):
# the binary starts with this image's libraries and accepts the bundled config.
RUN ["/promql-frontend", "--config", "/etc/promql-frontend/config.toml", "--check-config"]
EXPOSE 9095
ENTRYPOINT ["/promql-frontend"]
CMD ["--config", "/etc/promql-frontend/config.toml"]
