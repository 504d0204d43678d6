"""The shared layer cache: content-addressed images pulled from and pushed to ``cache_registry``.

A fresh runner (an empty engine) would rebuild the root filesystem, both
base images, the release layer and every context image before it builds a
single service.  Each of them is tagged by a hash of its inputs, so the image
in the cache under the same tag *is* what the build would make: it is pulled
by that tag and tagged locally, and what an engine makes is pushed right
after it is made.  A service image is looked up by its immutable tag (a hash
of all of its inputs) the same way; its moving ``:<release>`` tag is pushed
with it, for people and scanners.

The classic builder's ``cache_from`` is deliberately not used: measured on
Docker 20.10 (see the README), it re-runs every intermediate stage of a
multi-stage build (the service's dependency and library layers are such
stages) and makes the builder ignore its local cache for them, so it costs
more than it saves.  Pulling by exact tag is both faster and exact.

Nothing happens without a cache registry, or offline.  An image this engine
already pushed to (or pulled from) the cache is not pushed again: its
``RepoDigests`` name the cache repository.
"""

from __future__ import annotations

from pipeline.core import console
from pipeline.core.errors import LayerCacheError
from pipeline.core.settings import Settings
from pipeline.image.registry import RegistryFailure, pull, push, shown

_offline_noted: set[str] = set()


def enabled(settings: Settings) -> bool:
    if settings.cache_registry and settings.offline and settings.cache_registry not in _offline_noted:
        _offline_noted.add(settings.cache_registry)
        console.note(f"offline: the layer cache {shown(settings.cache_registry)} is not used")
    return bool(settings.cache_registry) and not settings.offline


def _split(settings: Settings, ref: str) -> tuple[str, str]:
    repository, _, tag = ref.rpartition(":")
    return f"{settings.cache_registry}/{repository}", tag


def _fail(settings: Settings, failure: RegistryFailure) -> LayerCacheError:
    return LayerCacheError(f"layer cache: {failure}",
                           hint=f"check that {shown(settings.cache_registry)} is reachable from the engine and accepts "
                                "pushes (docker login), or build without it (cache_registry: \"\")")


def fetch(client, settings: Settings, ref: str, what: str) -> str | None:
    """The image ``ref`` pulled from the cache and tagged locally (its ID), or None if the cache lacks it."""
    if not enabled(settings):
        return None
    repository, version = _split(settings, ref)
    with console.step(f"layer cache: pull {what} {ref}") as step:
        try:
            pull(client, repository, version)
        except RegistryFailure as failure:
            if not failure.missing:
                raise _fail(settings, failure) from None
            step["status"] = "not in the cache"
            return None
    image_id = client.inspect_image(f"{repository}:{version}")["Id"]
    local, _, local_tag = ref.rpartition(":")
    client.tag(image_id, local, local_tag)
    return image_id


def _push(client, settings: Settings, image_id: str, ref: str) -> None:
    repository, version = _split(settings, ref)
    with console.step(f"layer cache: push {ref}"):
        try:
            push(client, image_id, repository, version)
        except RegistryFailure as failure:
            raise _fail(settings, failure) from None


def store(client, settings: Settings, ref: str, image: dict, replace: bool = False) -> bool:
    """Push ``image`` (an inspect result) to the cache as ``ref`` unless it is there already (with ``replace``:
    the cache's image under ``ref`` was refused, so it goes whatever the engine remembers); whether it pushed."""
    if not enabled(settings):
        return False
    repository, _ = _split(settings, ref)
    if not replace and any(d.startswith(f"{repository}@") for d in image.get("RepoDigests") or ()):
        return False
    _push(client, settings, image["Id"], ref)
    return True


def store_service(client, settings: Settings, tags: tuple[str, str], image: dict, replace: bool = False) -> None:
    """A service image under its immutable tag, then its moving tag (which follows every new image)."""
    if store(client, settings, tags[0], image, replace):
        _push(client, settings, image["Id"], tags[1])
