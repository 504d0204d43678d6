# The release's shared dependency layer: the packages every service of the
# release needs at the same version (upper-constraints pins them to one),
# installed once into the venv at /var/lib/openstack.  Its final stage is
# the base of every service image of the release, so they all share this
# layer; its build stage is where service builds check the complete venv.
ARG BUILD_BASE
ARG RUNTIME_BASE
ARG CTX_WHEELS
FROM ${CTX_WHEELS} AS wheels

FROM ${BUILD_BASE} AS build
COPY --from=wheels / /build/wheels/
COPY dependencies.txt /build/
# uv marks a new venv as a cache directory (CACHEDIR.TAG), which backup tools
# skip: this one is the installation, so the markers go.
RUN uv venv --quiet --python "$OPENSTACK_PATCHES_PYTHON" /var/lib/openstack \
 && rm -f /var/lib/openstack/CACHEDIR.TAG /var/lib/openstack/.gitignore /var/lib/openstack/.lock \
 && if grep -q '^[^#]' /build/dependencies.txt; then \
        uv pip install --no-deps --no-index --find-links /build/wheels -r /build/dependencies.txt; \
    fi \
 && rm -f /var/lib/openstack/.lock

FROM ${RUNTIME_BASE}
COPY --from=build /var/lib/openstack /var/lib/openstack
ENV PATH=/var/lib/openstack/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    VIRTUAL_ENV=/var/lib/openstack
USER openstack
WORKDIR /var/lib/openstack
