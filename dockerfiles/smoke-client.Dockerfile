# The client of `invoke smoke`: python-openstackclient and its plugins at the
# release's upper-constraints versions, and qemu-img to make a real disk image.
# Package files come as a context image (CTX_WHEELS), as for the release layers.
ARG BUILD_BASE
ARG RUNTIME_BASE
ARG CTX_WHEELS
FROM ${CTX_WHEELS} AS wheels

FROM ${BUILD_BASE} AS build
COPY --from=wheels / /build/wheels/
COPY requirements.txt /build/
RUN venv-layer --with-venv /layer uv pip install --no-deps --no-index --find-links /build/wheels -r /build/requirements.txt

FROM ${RUNTIME_BASE}
USER root
RUN set -eux; \
    export DEBIAN_FRONTEND=noninteractive; \
    apt-get update; \
    apt-get install -y --no-install-recommends qemu-utils; \
    apt-get clean; \
    rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt /var/log/dpkg.log
COPY --from=build /layer/ /
ENV PATH=/var/lib/openstack/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    VIRTUAL_ENV=/var/lib/openstack
USER openstack
WORKDIR /tmp
