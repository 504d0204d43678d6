# Generic service image: a venv built on the build base, shipped on the runtime base.
#
# Lines starting with `#@library ` form a block repeated once per patched
# library the service depends on ({lib}, {lib_arg}, {lib_version} filled in).
# Named contexts: docker-py has no BuildKit, so each context (the patched
# service or library tree) is a tiny image passed in a CTX_* build argument
# and aliased by a stage of the context's name; under BuildKit,
# `docker buildx build --build-context oslo.messaging=DIR` replaces that stage.
ARG BUILD_BASE
ARG RUNTIME_BASE
ARG CTX_SERVICE
#@library ARG CTX_{lib_arg}
FROM ${CTX_SERVICE} AS service-source
#@library FROM ${CTX_{lib_arg}} AS {lib}

FROM ${BUILD_BASE} AS build
ARG PYTHON_VERSION
ARG INDEX_URL
ENV UV_INDEX_URL=${INDEX_URL} VIRTUAL_ENV=/var/lib/openstack UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy
RUN uv venv --python "/usr/bin/python${PYTHON_VERSION}" /var/lib/openstack
# Layer 1: every dependency, exactly as locked under the release's effective
# constraints. Changes only when requirements or constraints change.
COPY dependencies.txt upper-constraints.txt /build/
RUN uv pip install --no-deps --requirement /build/dependencies.txt
# Layer 2: patched libraries, one layer each.
#@library COPY --from={lib} / /build/src/{lib}/
#@library RUN PBR_VERSION={lib_version} uv pip install --no-deps /build/src/{lib}
# Layer 3: the patched service; a service patch rebuilds only this.
COPY --from=service-source / /build/src/service/
ARG SERVICE_VERSION
RUN PBR_VERSION="${SERVICE_VERSION}" uv pip install --no-deps /build/src/service \
 && uv pip check

FROM ${RUNTIME_BASE}
COPY --from=build /var/lib/openstack /var/lib/openstack
ENV PATH=/var/lib/openstack/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    VIRTUAL_ENV=/var/lib/openstack
USER openstack
WORKDIR /var/lib/openstack
