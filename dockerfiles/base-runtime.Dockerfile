# Runtime base: Python, CA certificates and the unprivileged `openstack` user.
# Nothing to compile with: service images copy a finished venv onto this.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
ARG PYTHON_VERSION
ENV DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8
RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends "python${PYTHON_VERSION}" ca-certificates; \
    apt-get clean; \
    rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt /var/log/dpkg.log; \
    groupadd --system --gid 42424 openstack; \
    useradd --system --uid 42424 --gid openstack --home-dir /var/lib/openstack \
            --no-create-home --shell /usr/sbin/nologin openstack
