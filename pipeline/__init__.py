"""openstack-patches: ship patched OpenStack service images from patch files.

Stages: config -> sources (fetch) -> patches -> constraints -> images -> sbom,
plus testapply.  ``tasks.py`` and ``noxfile.py`` only call into this package.
"""
