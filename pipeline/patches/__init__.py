"""Patch series: reading, applying, checking and keeping them alive as upstream moves.

Owns one patch file (``patchfile``), a series' order, applying it in an
index and the prepared trees (``series``), rewriting a series whole or not at
all (``seriesedit``), the lifecycle commands (``lifecycle``: new, import,
refresh, remove, renumber), upstream history and what landed there
(``upstream``), the stable-policy audit (``audit``) and reproducible source
archives of the prepared trees (``export``).

May import: core, sources.
"""
