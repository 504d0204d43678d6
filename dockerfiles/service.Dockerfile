# Generic service image: the release's shared layers, then one layer per install.
#
# Lines starting with `#@library ` form a block repeated once per patched
# library the service depends on ({lib}, {lib_arg}, {lib_version} filled in);
# `#@if dependencies ` lines are kept when the service needs packages beyond
# the release layers.
#
# The patched trees (the service, each patched library) come as archives in
# the build context, `trees/<tree>/layer.tar`: each tree's wheel, built and
# installed into the venv's layout on the build host, with the byte code of
# its modules made by the image's own Python, every file with one fixed
# mtime.  `ADD` unpacks one into the image as one layer, reproducibly, so a
# service patch rebuilds and re-ships only the service's layer, and the
# images of a release share each library's.
#
# The service's own dependencies (package files from PyPI) are installed in
# a build stage with venv-layer, which keeps exactly the files the install
# added.  Named contexts: docker-py has no BuildKit, so the package files
# are a tiny image passed in CTX_WHEELS and aliased by the stage `wheels`;
# under BuildKit, `docker buildx build --build-context wheels=DIR` replaces
# that stage (see `invoke bake`).
ARG BUILD_BASE
ARG RELEASE_BUILD
ARG RELEASE_BASE
ARG CTX_WHEELS
FROM ${CTX_WHEELS} AS wheels

# The service's own dependencies beyond the release layers (if it has any).
#@if dependencies FROM ${BUILD_BASE} AS layer-dependencies
#@if dependencies COPY --from=wheels / /build/wheels/
#@if dependencies COPY dependencies.txt /build/
#@if dependencies RUN venv-layer --move /layer uv pip install --no-deps --no-index --find-links /build/wheels -r /build/dependencies.txt

# The complete venv's distributions must be consistent (their metadata is enough; not shipped).
FROM ${RELEASE_BUILD} AS check
#@if dependencies COPY --from=layer-dependencies /layer-meta/ /
#@library ADD trees/{lib}/metadata.tar /
ADD trees/service/metadata.tar /
RUN uv pip check

# RELEASE_BASE: the release layers, with the service's own Debian packages on top when it has any.
FROM ${RELEASE_BASE}
# /etc/<service> for the configuration, the httpd configuration of httpd+WSGI processes (runtime.yaml).
ADD runtime.tar /
#@if dependencies COPY --from=layer-dependencies /layer/ /
#@library ADD trees/{lib}/layer.tar /
ADD trees/service/layer.tar /
