"""Proving that series and images work: upstream unit tests and a real control plane.

Owns testapply (``testapply``: each series against upstream's unit tests,
with tests chosen from the import graph by ``impact``) and ``invoke smoke``
(``smoke``: a release's images on MariaDB, RabbitMQ, memcached and OVN,
checked with python-openstackclient).

May import: core, sources, patches, constraints, image, provenance, build.
"""
