"""Where everything lives: every path of the work directory and the cache, in one place.

Stages ask the ``Layout`` for paths instead of joining strings, so the
README's output table and the code cannot disagree.  Records store paths
relative to the work directory (``rel``) or to the repository, never
absolute paths of the build machine.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Layout:
    root: Path  # the repository: releases/, patches/, overrides/, dockerfiles/
    workdir: Path  # generated output (build/ by default)
    cache_dir: Path  # persistent caches shared by work directories

    # --- the repository -----------------------------------------------------------
    def series_dir(self, component: str, release: str) -> Path:
        return self.root / "patches" / component / release

    def overrides_file(self, release: str) -> Path:
        return self.root / "overrides" / release / "constraints.txt"

    def build_constraints_file(self) -> Path:
        """Pins for every environment an sdist is built in, for all releases (setuptools with pkg_resources)."""
        return self.root / "overrides" / "build-constraints.txt"

    def release_dir(self, release: str) -> Path:
        return self.root / "releases" / release

    def constraints_snapshot(self, release: str) -> Path:
        return self.release_dir(release) / "upper-constraints.txt"

    def repo_rel(self, path: Path) -> str:
        """A path inside the repository as written in records and messages."""
        try:
            return str(path.relative_to(self.root))
        except ValueError:
            return str(path)

    # --- the work directory -------------------------------------------------------
    def rel(self, path: Path) -> str:
        """A path inside the work directory as written in records (relative, portable)."""
        try:
            return str(path.relative_to(self.workdir))
        except ValueError:
            return str(path)

    def resolve(self, rel: str) -> Path:
        return self.workdir / rel

    def source_tree(self, release: str, component: str) -> Path:
        return self.workdir / "src" / release / component

    def prepared_tree(self, release: str, component: str) -> Path:
        return self.workdir / "patched" / release / component

    def release_out(self, release: str) -> Path:
        return self.workdir / release

    def sources_file(self, release: str) -> Path:
        return self.release_out(release) / "sources.json"

    def effective_constraints(self, release: str) -> Path:
        return self.release_out(release) / "upper-constraints.txt"

    def manifest(self, release: str) -> Path:
        return self.release_out(release) / "manifest.yaml"

    def base_logs(self, release: str) -> Path:
        return self.release_out(release) / "base"

    def release_layer_dir(self, release: str) -> Path:
        return self.release_out(release) / "release-layer"

    def tree_wheel_log(self, release: str, component: str) -> Path:
        return self.release_out(release) / "wheels" / f"{component}.log"

    def wheel_build_tree(self, release: str, component: str) -> Path:
        """Where a patched tree's wheel is built: a copy of the tree that the backend may write in (pbr does)."""
        return self.release_out(release) / "wheels" / component

    def service_dir(self, release: str, service: str) -> Path:
        return self.release_out(release) / service

    def image_record(self, release: str, service: str) -> Path:
        return self.service_dir(release, service) / "image.json"

    def sbom_file(self, release: str, service: str) -> Path:
        return self.service_dir(release, service) / "sbom.cdx.json"

    def sbom_record(self, release: str, service: str) -> Path:
        return self.service_dir(release, service) / "sbom.json"

    def vex_file(self, release: str, service: str) -> Path:
        return self.service_dir(release, service) / "vex.cdx.json"

    def vex_record(self, release: str, service: str) -> Path:
        return self.service_dir(release, service) / "vex.json"

    def push_record(self, release: str, service: str) -> Path:
        return self.service_dir(release, service) / "push.json"

    def runtime_requirements(self, release: str, service: str) -> Path:
        """The Python distributions runtime.yaml adds to a service's image, as the resolver reads them."""
        return self.service_dir(release, service) / "runtime-requirements.txt"

    def build_log(self, release: str, service: str) -> Path:
        return self.service_dir(release, service) / "build.log"

    def bake_file(self, release: str) -> Path:
        return self.release_out(release) / "docker-bake.json"

    def bake_dir(self, release: str, service: str) -> Path:
        """A bake target's own directories: ``context/`` (Dockerfile, dependencies.txt) and package-file contexts."""
        return self.service_dir(release, service) / "bake"

    def smoke_dir(self, release: str) -> Path:
        """``invoke smoke``'s files of a release: its images' build logs (``images/``), and every container's
        log (``logs/``) when a run failed."""
        return self.release_out(release) / "smoke"

    def smoke_junit(self, release: str) -> Path:
        return self.workdir / "smoke" / release / "junit.xml"

    def stamp(self, stage: str, release: str, name: str) -> Path:
        return self.workdir / ".stamps" / stage / release / f"{name}.json"

    def lock(self, name: str) -> Path:
        return self.workdir / ".locks" / f"{name}.lock"

    def logs(self) -> Path:
        return self.workdir / "logs"

    def testapply_root(self) -> Path:
        return self.workdir / "testapply"

    def testapply_series(self, release: str, component: str) -> Path:
        return self.testapply_root() / release / component

    def lifecycle_dir(self, release: str, component: str) -> Path:
        """Where patches.new/import/refresh keep a stopped operation: state.json and worktree/."""
        return self.workdir / "lifecycle" / release / component

    def ref_tree(self, release: str, component: str, ref: str) -> Path:
        """The pristine tree of a component at another ref than the release's (patches.upstreamed --to, refresh)."""
        return self.workdir / "lifecycle" / "refs" / release / component / ref.replace("/", "_")

    def export_dir(self, release: str) -> Path:
        return self.workdir / "export" / release

    def export_sums(self, release: str) -> Path:
        return self.export_dir(release) / "SHA256SUMS"

    def hotpatch_dir(self, container_id: str) -> Path:
        """What a hotpatch saved of one container (by ID: a recreated container is another one)."""
        return self.workdir / "hotpatch" / container_id[:12]

    # --- the cache ------------------------------------------------------------------
    def mirror(self, component: str, url: str) -> Path:
        # Keyed by URL as well as name: two configurations pointing one
        # component at different remotes must not share a mirror.
        key = hashlib.sha256(url.encode()).hexdigest()[:10]
        return self.cache_dir / "git" / f"{component}-{key}.git"

    def advisories_export(self, name: str, url: str) -> Path:
        """Where a git advisory source's YAML folder is exported, one subfolder per commit."""
        return self.cache_dir / "advisories" / self.mirror(name, url).stem

    def sdist_cache(self) -> Path:
        return self.cache_dir / "sdist"

    def constraints_cache(self) -> Path:
        return self.cache_dir / "constraints"

    def wheel_cache(self) -> Path:
        return self.cache_dir / "wheels"

    def tree_wheels(self) -> Path:
        return self.cache_dir / "tree-wheels"

    def tree_layers(self) -> Path:
        return self.cache_dir / "tree-layers"

    def bytecode(self) -> Path:
        return self.cache_dir / "bytecode"

    def build_envs(self) -> Path:
        return self.cache_dir / "build-envs"

    def test_venvs(self) -> Path:
        return self.cache_dir / "testapply-venvs"

    def cache_lock(self, name: str) -> Path:
        return self.cache_dir / "locks" / f"{name}.lock"
