"""Upper-constraints: the release's pinned snapshot, overrides, and the effective file builds use.

Owns the snapshots under ``releases/<R>/``, downloaded constraints and their
cache, marker-aware overrides and the effective constraints with their record
(``effective``).

May import: core.
"""
