"""Upstream source: each component at its ref, fetched once and recorded.

Owns the git mirrors and the PyPI sdists a component comes from, the
pristine trees under ``<workdir>/src/``, ``sources.json`` (``fetch``) and
pbr's versions of git commits (``versions``).

May import: core.
"""
