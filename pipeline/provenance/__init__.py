"""What is in an image and what that means: SBOM, VEX, advisories, the manifest, CVE queries.

Owns the CycloneDX SBOM (``sbom``) and VEX (``vex``) of each image, the
advisory sources and the assessment of every image against them
(``advisories``, ``assessment``), backport candidates (``candidates``),
where a CVE is fixed (``cve``) and the release manifest (``manifest``).  It
reads the image record (``image.record``), never the build's own state.

May import: core, sources, patches, constraints, image.
"""
