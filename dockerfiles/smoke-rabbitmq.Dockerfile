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
# Ready when the AMQP listener answers the protocol header (it opens after the boot steps, definitions
# included); rabbitmq-diagnostics boots an Erlang node for each probe, seconds of CPU on a busy host.
HEALTHCHECK --interval=5s --timeout=5s --retries=60 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/5672 && printf 'AMQP\\0\\0\\11\\1' >&3 && head -c 4 <&3 | grep -q ."]
USER rabbitmq
ENV HOME=/var/lib/rabbitmq RABBITMQ_LOGS=-
CMD ["rabbitmq-server"]
