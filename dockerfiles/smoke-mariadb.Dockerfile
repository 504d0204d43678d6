# MariaDB for `invoke smoke`: Debian's mariadb-server on the release's runtime base.
# A test fixture, tuned for speed over durability (no doublewrite, lazy log flush).
ARG BASE
FROM ${BASE}
USER root
RUN set -eux; \
    export DEBIAN_FRONTEND=noninteractive; \
    apt-get update; \
    apt-get install -y --no-install-recommends mariadb-server; \
    apt-get clean; \
    rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt /var/log/dpkg.log; \
    install -d -o mysql -g mysql /run/mysqld; \
    printf '[mysqld]\nbind-address = 0.0.0.0\nskip-name-resolve\nmax_connections = 1000\ninnodb_flush_log_at_trx_commit = 2\ninnodb_doublewrite = 0\nsync_binlog = 0\n' \
        > /etc/mysql/mariadb.conf.d/90-smoke.cnf
HEALTHCHECK --interval=1s --timeout=5s --retries=600 CMD mariadb-admin --socket=/run/mysqld/mysqld.sock ping --silent
USER mysql
CMD ["mariadbd"]
