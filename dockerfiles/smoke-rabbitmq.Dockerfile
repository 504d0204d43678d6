# RabbitMQ for `invoke smoke`: Debian's rabbitmq-server on the release's runtime base.
# The smoke writes /etc/rabbitmq/rabbitmq.conf (its user and password) before the start.
ARG BASE
FROM ${BASE}
USER root
RUN set -eux; \
    export DEBIAN_FRONTEND=noninteractive; \
    apt-get update; \
    apt-get install -y --no-install-recommends rabbitmq-server; \
    apt-get clean; \
    rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt /var/log/dpkg.log
HEALTHCHECK --interval=2s --timeout=15s --retries=150 CMD rabbitmq-diagnostics -q check_running
USER rabbitmq
ENV HOME=/var/lib/rabbitmq RABBITMQ_LOGS=-
CMD ["rabbitmq-server"]
