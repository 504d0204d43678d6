# One shared layer of a release: the packages a group of its services all
# install at the same version (upper-constraints pins them to one), beyond
# the levels below it.  Level 0 is what every service needs and starts the
# venv at /var/lib/openstack on the runtime base; each further level adds
# what a smaller group shares.  A service image is built on the deepest level
# of its group, so what several services need is stored once and no image
# carries a package it does not install.  The build stage (the build base
# with the complete venv) is where service builds check their venv.
#
# `#@if first ` lines are kept for level 0 only.
ARG BUILD_PARENT
ARG RUNTIME_PARENT
ARG CTX_WHEELS
FROM ${CTX_WHEELS} AS wheels

FROM ${BUILD_PARENT} AS build
COPY --from=wheels / /build/wheels/
COPY dependencies.txt /build/
ARG LEVEL
#@if first RUN venv-layer --with-venv /layers/${LEVEL} sh -c 'if grep -q "^[^#]" /build/dependencies.txt; then \
#@if first         uv pip install --no-deps --no-index --find-links /build/wheels -r /build/dependencies.txt; fi'
#@if later RUN venv-layer /layers/${LEVEL} uv pip install --no-deps --no-index --find-links /build/wheels -r /build/dependencies.txt

FROM ${RUNTIME_PARENT}
ARG LEVEL
COPY --from=build /layers/${LEVEL}/ /
#@if first ENV PATH=/var/lib/openstack/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
#@if first     VIRTUAL_ENV=/var/lib/openstack
#@if first USER openstack
#@if first WORKDIR /var/lib/openstack
