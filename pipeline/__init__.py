"""openstack-patches: ship patched OpenStack service images from patch files.

Stages: fetch (sources) -> patch (series) -> constraints -> lock (wheels) ->
image (release layer, service image) -> sbom, vex -> push; plus testapply,
the patch lifecycle commands and CI helpers.  ``tasks.py`` and
``noxfile.py`` only call into this package.
"""

__version__ = "0.3.0"
