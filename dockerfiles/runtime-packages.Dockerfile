# Debian packages an image needs at run time, in one layer on PARENT: a level of
# the release layers (what a group of services shares) or a service's own.
# The packages come from runtime.yaml and the services' bindep.txt; apt's lists,
# caches and logs go in the same step, so the layer holds the packages only.
# Proxies reach apt as the engine's predefined build arguments, which it keeps
# out of the image history.
ARG PARENT
FROM ${PARENT}
ARG PACKAGES
USER root
RUN set -eux; \
    export DEBIAN_FRONTEND=noninteractive; \
    apt-get update; \
    apt-get install -y --no-install-recommends ${PACKAGES}; \
    apt-get clean; \
    rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt /var/log/dpkg.log /var/log/alternatives.log \
           /var/cache/debconf/*-old /var/cache/ldconfig/aux-cache
USER openstack
