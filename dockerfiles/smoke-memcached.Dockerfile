# memcached for `invoke smoke`: Debian's memcached on the release's runtime base.
ARG BASE
ARG PYTHON_VERSION
FROM ${BASE}
ARG PYTHON_VERSION
USER root
RUN set -eux; \
    export DEBIAN_FRONTEND=noninteractive; \
    apt-get update; \
    apt-get install -y --no-install-recommends memcached; \
    apt-get clean; \
    rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt /var/log/dpkg.log; \
    ln -s "/usr/bin/python${PYTHON_VERSION}" /usr/local/bin/probe-python
HEALTHCHECK --interval=1s --timeout=5s --retries=120 \
    CMD ["probe-python", "-c", "import socket; s = socket.create_connection(('127.0.0.1', 11211), 2); s.sendall(b'version\\r\\n'); assert s.recv(64).startswith(b'VERSION')"]
USER memcache
CMD ["memcached", "-l", "0.0.0.0", "-p", "11211", "-m", "64", "-U", "0"]
