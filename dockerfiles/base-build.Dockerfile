# Build base: the runtime base plus compilers, headers, git and uv.
# Only build stages start from it; it is never shipped.  No package index
# URL, credential or CA bundle enters it: Python packages are downloaded on
# the host (hash-checked) and reach build stages as context images, so
# builds install with --no-index.  uv and venv-layer come from the context.
ARG RUNTIME_BASE
FROM ${RUNTIME_BASE}
ARG PYTHON_VERSION
# Headers the release's sdists compile against (build_packages in releases/<release>/runtime.yaml).
ARG BUILD_PACKAGES=""
USER root
RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends build-essential pkg-config git \
        "python${PYTHON_VERSION}-dev" "python${PYTHON_VERSION}-venv" libffi-dev libssl-dev ${BUILD_PACKAGES}; \
    apt-get clean; \
    rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt /var/log/dpkg.log
COPY uv venv-layer /usr/local/bin/
ENV UV_NO_CACHE=1 UV_PYTHON_DOWNLOADS=never UV_LINK_MODE=copy UV_COMPILE_BYTECODE=1 UV_NO_PROGRESS=1 \
    VIRTUAL_ENV=/var/lib/openstack OPENSTACK_PATCHES_PYTHON=/usr/bin/python${PYTHON_VERSION}
RUN venv-layer --venv
WORKDIR /build
