# gantry's action image: the gantry binary and a pinned, checksum-verified Terraform on a
# distroless base (glibc, CA certificates, busybox for Terraform's local-exec).
#
# The base images are build arguments so a registry mirror can be used; the defaults are what
# GitHub builds. The image runs as root on purpose: GitHub runs container actions with the
# workspace (/github/workspace), the file commands ($GITHUB_OUTPUT, $GITHUB_STEP_SUMMARY) and the
# Docker socket owned by the runner's user, and documents that Docker actions must not set USER.
# Locally it runs fine as the distroless `nonroot` user: `docker run --user nonroot ...`.
ARG RUST_IMAGE=rust:1.95-slim-bookworm
ARG FETCH_IMAGE=busybox:1.36.1
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:debug

# First: the legacy builder builds every stage up to a --target, so `--target terraform` (the
# checksum test) must not have to build gantry.
FROM ${FETCH_IMAGE} AS terraform
ARG TERRAFORM_VERSION=1.11.4
# SHA-256 of terraform_1.11.4_linux_amd64.zip as published in HashiCorp's SHA256SUMS.
ARG TERRAFORM_SHA256=1ce994251c00281d6845f0f268637ba50c0005657eb3cf096b92f753b42ef4dc
ARG TERRAFORM_URL=https://releases.hashicorp.com/terraform/${TERRAFORM_VERSION}/terraform_${TERRAFORM_VERSION}_linux_amd64.zip
ADD ${TERRAFORM_URL} /tmp/terraform.zip
RUN echo "${TERRAFORM_SHA256}  /tmp/terraform.zip" | sha256sum -c - \
 && mkdir -p /out \
 && unzip -q /tmp/terraform.zip terraform -d /out \
 && /out/terraform version | head -n1 | grep -q " v${TERRAFORM_VERSION}$"

# Helm and Kustomize, for the `charts` input and kustomization directories: each a release
# archive verified by its SHA-256 (the release pipeline passes the published URLs and sums). Without
# URLs (a development build of main) neither is bundled, and a run with charts or kustomizations
# says so before anything runs (or set GANTRY_HELM / GANTRY_KUSTOMIZE to binaries in the workspace).
FROM ${FETCH_IMAGE} AS render-tools
ARG HELM_URL=
ARG HELM_SHA256=
ARG KUSTOMIZE_URL=
ARG KUSTOMIZE_SHA256=
RUN mkdir -p /out /tmp/helm /tmp/kustomize \
 && if [ -n "${HELM_URL}" ]; then \
      wget -q -O /tmp/helm.tar.gz "${HELM_URL}" \
      && echo "${HELM_SHA256}  /tmp/helm.tar.gz" | sha256sum -c - \
      && tar -xzf /tmp/helm.tar.gz -C /tmp/helm \
      && cp "$(find /tmp/helm -type f -name helm | head -n1)" /out/helm \
      && /out/helm version --short; \
    fi \
 && if [ -n "${KUSTOMIZE_URL}" ]; then \
      wget -q -O /tmp/kustomize.tar.gz "${KUSTOMIZE_URL}" \
      && echo "${KUSTOMIZE_SHA256}  /tmp/kustomize.tar.gz" | sha256sum -c - \
      && tar -xzf /tmp/kustomize.tar.gz -C /tmp/kustomize \
      && cp "$(find /tmp/kustomize -type f -name kustomize | head -n1)" /out/kustomize \
      && /out/kustomize version; \
    fi

FROM ${RUST_IMAGE} AS build
WORKDIR /src
# Dependencies first, in their own layer: a change to gantry's sources rebuilds only gantry.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && cargo build --release --locked --bin gantry \
 && rm -rf src
COPY src ./src
COPY examples/demo ./examples/demo
# The copied sources keep their own (older) times; touch them so cargo rebuilds gantry itself.
RUN touch src/main.rs src/lib.rs \
 && cargo build --release --locked --bin gantry \
 && cp target/release/gantry /gantry \
 && /gantry --version

FROM ${RUNTIME_IMAGE}
COPY --from=terraform /out/terraform /usr/local/bin/terraform
COPY --from=build /gantry /usr/local/bin/gantry
COPY --from=render-tools /out/ /usr/local/bin/
# Terraform's local-exec runs /bin/sh; distroless keeps its shell in /busybox only.
RUN ["/busybox/sh", "-c", "mkdir -p /bin && ln -s /busybox/sh /bin/sh"]
ENV CHECKPOINT_DISABLE=1 \
    TF_IN_AUTOMATION=1
LABEL org.opencontainers.image.title="gantry" \
      org.opencontainers.image.description="One GitHub Action step from commit to healthy rollout on Amazon EKS" \
      org.opencontainers.image.licenses="Apache-2.0"
ENTRYPOINT ["/usr/local/bin/gantry"]
