# Generic service image: the release's shared layer, then one layer per install.
#
# Lines starting with `#@library ` form a block repeated once per patched
# library the service depends on ({lib}, {lib_arg}, {lib_version} filled in);
# `#@if dependencies ` lines are kept when the service needs packages beyond
# the release layer.
# Named contexts: docker-py has no BuildKit, so each context (the package
# files of the service's own dependencies, the wheel built on the host from
# the patched service tree and from each patched library tree) is a tiny
# image passed in a CTX_* build argument and aliased by a stage of the
# context's name; under BuildKit, `docker buildx build --build-context
# oslo.messaging=DIR` replaces that stage (see `invoke bake`).
#
# Each layer stage installs into an empty venv with venv-layer, which keeps
# exactly the files that install added; the final stage stacks them on the
# release layer, so a service patch rebuilds and re-ships only the last one.
ARG BUILD_BASE
ARG RELEASE_BUILD
ARG RELEASE_BASE
ARG CTX_WHEELS
ARG CTX_SERVICE
#@library ARG CTX_{lib_arg}
FROM ${CTX_WHEELS} AS wheels
FROM ${CTX_SERVICE} AS service
#@library FROM ${CTX_{lib_arg}} AS {lib}

# The service's own dependencies beyond the release layer (if it has any).
#@if dependencies FROM ${BUILD_BASE} AS layer-dependencies
#@if dependencies COPY --from=wheels / /build/wheels/
#@if dependencies COPY dependencies.txt /build/
#@if dependencies RUN venv-layer --move /layer uv pip install --no-deps --no-index --find-links /build/wheels -r /build/dependencies.txt

# Each patched library, one layer each: its wheel, built from the patched tree.
#@library FROM ${BUILD_BASE} AS layer-{lib}
#@library COPY --from={lib} / /build/dist/
#@library RUN venv-layer --move /layer uv pip install --no-deps --no-index /build/dist/*.whl

# The patched service.
FROM ${BUILD_BASE} AS layer-service
COPY --from=service / /build/dist/
RUN venv-layer --move /layer uv pip install --no-deps --no-index /build/dist/*.whl

# The complete venv's distributions must be consistent (their metadata is enough; not shipped).
FROM ${RELEASE_BUILD} AS check
#@if dependencies COPY --from=layer-dependencies /layer-meta/ /
#@library COPY --from=layer-{lib} /layer-meta/ /
COPY --from=layer-service /layer-meta/ /
RUN uv pip check

FROM ${RELEASE_BASE}
#@if dependencies COPY --from=layer-dependencies /layer/ /
#@library COPY --from=layer-{lib} /layer/ /
COPY --from=layer-service /layer/ /
