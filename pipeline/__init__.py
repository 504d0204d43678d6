"""openstack-patches: ship patched OpenStack service images from patch files.

The subpackages draw the pipeline, each importing only those before it:
``core`` (the foundations) -> ``sources`` (upstream source) -> ``patches``
(series) and ``constraints`` -> ``image`` (bases, locks, layers, service
images, their record) -> ``provenance`` (SBOM, VEX, advisories, manifest)
-> ``build`` (the build DAG) -> ``testing`` (testapply, smoke); ``ci`` (the
CI matrix) stands beside them.  ``tasks.py`` and ``noxfile.py`` only call
into this package.
"""

__version__ = "0.3.0"
