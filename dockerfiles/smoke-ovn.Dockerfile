# OVN's northbound and southbound databases and ovn-northd for `invoke smoke`
# (Debian's ovn-central on the release's runtime base): the databases listen on
# TCP 6641 and 6642 for neutron's ML2/OVN driver, northd runs in the foreground.
ARG BASE
FROM ${BASE}
USER root
RUN set -eux; \
    export DEBIAN_FRONTEND=noninteractive; \
    apt-get update; \
    apt-get install -y --no-install-recommends ovn-central; \
    apt-get clean; \
    rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt /var/log/dpkg.log; \
    printf '%s\n' '#!/bin/sh' 'set -e' 'mkdir -p /var/run/ovn /var/lib/ovn' \
      'for db in nb sb; do' \
      '  port=6641; [ $db = sb ] && port=6642' \
      '  [ -e /var/lib/ovn/ovn${db}_db.db ] || ovsdb-tool create /var/lib/ovn/ovn${db}_db.db /usr/share/ovn/ovn-$db.ovsschema' \
      '  ovsdb-server --detach --no-chdir --pidfile=/var/run/ovn/ovn${db}_db.pid --unixctl=/var/run/ovn/ovn${db}_db.ctl \' \
      '    --remote=punix:/var/run/ovn/ovn${db}_db.sock --remote=ptcp:$port:0.0.0.0 --log-file=/var/log/ovn/ovsdb-server-$db.log \' \
      '    /var/lib/ovn/ovn${db}_db.db' \
      'done' \
      'exec ovn-northd --ovnnb-db=unix:/var/run/ovn/ovnnb_db.sock --ovnsb-db=unix:/var/run/ovn/ovnsb_db.sock' \
      > /usr/local/bin/ovn-central-run; \
    chmod 755 /usr/local/bin/ovn-central-run
HEALTHCHECK --interval=1s --timeout=5s --retries=120 \
    CMD ovn-nbctl --db=unix:/var/run/ovn/ovnnb_db.sock --timeout=3 show >/dev/null && ovn-sbctl --db=unix:/var/run/ovn/ovnsb_db.sock --timeout=3 show >/dev/null
CMD ["ovn-central-run"]
