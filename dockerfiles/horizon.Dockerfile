# horizon's image: the generic service image (dockerfiles/service.Dockerfile, whose notes
# follow), then one layer more: the dashboard's static files, collected and compressed
# once, here, as an operator expects of an image (kolla and LOCI do it at every start).
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

# horizon's static files, collected (collectstatic) and compressed (django-compressor's
# offline manifest) into horizon's default STATIC_ROOT, <site-packages>/static, which the
# horizon process's uWSGI serves at /static (runtime.yaml).  Django needs a SECRET_KEY to
# start: a throw-away settings file gives it one and is removed in the same step.  The
# deployment's settings come from /etc/horizon/local_settings.py (the symbolic link
# below, as Debian's package makes it); the image's own snippet keeps COMPRESS_OFFLINE
# on, so that the pages name the compressed files made here.  The throw-away settings give
# Django a cache that answers (the default, memcached on 127.0.0.1, is not there while
# building): with a dead cache one block of the pages is left out of the manifest, and a
# deployment, whose cache answers, then fails every page with OfflineGenerationError.
USER root
RUN set -eu; \
    site=$(/var/lib/openstack/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'); \
    local="$site/openstack_dashboard/local"; \
    printf '%s\n' 'SECRET_KEY = "build-only"' 'COMPRESS_OFFLINE = True' \
        'CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}' > "$local/local_settings.py"; \
    cd "$site"; \
    PYTHONDONTWRITEBYTECODE=1 /var/lib/openstack/bin/python -m django collectstatic --noinput --verbosity 0 \
        --settings openstack_dashboard.settings; \
    PYTHONDONTWRITEBYTECODE=1 /var/lib/openstack/bin/python -m django compress --force --verbosity 0 \
        --settings openstack_dashboard.settings; \
    rm "$local/local_settings.py"; \
    ln -s /etc/horizon/local_settings.py "$local/local_settings.py"; \
    printf '# openstack-patches: the image carries its compressed files (made when it was built)\nCOMPRESS_OFFLINE = True\n' \
        > "$local/local_settings.d/_0000_openstack_patches.py"; \
    test -s "$site/static/dashboard/manifest.json"
USER openstack
