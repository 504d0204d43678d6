"""Images: from prepared trees and locks to tagged images on the engine, and their record.

Owns the base images (``bases``), each image's Debian packages (``packages``),
the dependency locks and the release's shared levels (``dependencies``,
``wheels``), the patched trees' wheels, layers and byte code (``tree_wheel``,
``tree_layer``, ``bytecode``), Dockerfiles (``dockerfiles``), the engine,
registries and the layer cache (``engine``, ``registry``, ``layer_cache``),
the release layers and service images (``release_layer``, ``service_image``),
what a release's images share, prepared once (``prepare``), the image
record (``record``), pushes, bake files and hotpatches (``push``, ``bake``,
``hotpatch``).

May import: core, sources, patches, constraints.
"""
