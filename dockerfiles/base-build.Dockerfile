# Build base: the runtime base plus compilers, headers, git and uv.
# Only build stages start from it; it is never shipped, so the build CA bundle
# and index URL it carries never reach a service image.
ARG RUNTIME_BASE
FROM ${RUNTIME_BASE}
ARG PYTHON_VERSION
ARG UV_VERSION
ARG INDEX_URL
USER root
RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends build-essential pkg-config git \
        "python${PYTHON_VERSION}-dev" "python${PYTHON_VERSION}-venv" libffi-dev libssl-dev; \
    apt-get clean; \
    rm -rf /var/lib/apt/lists/*
COPY build-ca.crt /etc/openstack-patches/build-ca.crt
ENV SSL_CERT_FILE=/etc/openstack-patches/build-ca.crt \
    PIP_CERT=/etc/openstack-patches/build-ca.crt \
    UV_NO_CACHE=1 \
    UV_PYTHON_DOWNLOADS=never
RUN set -eux; \
    "python${PYTHON_VERSION}" -m venv /opt/uv; \
    /opt/uv/bin/pip install --no-cache-dir --index-url "${INDEX_URL}" "uv==${UV_VERSION}"; \
    ln -s /opt/uv/bin/uv /usr/local/bin/uv
