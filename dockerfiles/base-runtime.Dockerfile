# Runtime base: Python, CA certificates and the unprivileged `openstack` user.
# Nothing to compile with: service images add finished venv layers onto this.
# A bootstrapped root filesystem already has Python (installed and cleaned
# before import); a pulled image gets it here, with apt's caches removed in
# the same step.  Proxies reach apt as the engine's predefined build
# arguments, which it keeps out of the image history.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
ARG PYTHON_VERSION
ENV DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8
RUN set -eux; \
    if ! command -v "python${PYTHON_VERSION}" >/dev/null || [ ! -e /etc/ssl/certs/ca-certificates.crt ]; then \
        apt-get update; \
        apt-get install -y --no-install-recommends "python${PYTHON_VERSION}" ca-certificates; \
        apt-get clean; \
        rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt /var/log/dpkg.log; \
    fi; \
    groupadd --system --gid 42424 openstack; \
    useradd --system --uid 42424 --gid openstack --home-dir /var/lib/openstack \
            --no-create-home --shell /usr/sbin/nologin openstack
