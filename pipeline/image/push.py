"""Push stage: the image's tags to the configured registry, and the record ``push.json``.

A failed push leaves nothing behind: the local registry tags it made are
removed again, and no record claims a push that did not happen.  Registry
credentials come from the engine's own login (``docker login``); the
registry's URL is shown without any user-info.
"""

from __future__ import annotations

import contextlib

from pipeline.core.errors import PushError
from pipeline.core.releases import Project
from pipeline.image import record as image_record
from pipeline.image.record import PushRecord
from pipeline.image.registry import RegistryFailure
from pipeline.image.registry import push as push_tag
from pipeline.image.registry import shown as shown_registry


def push(project: Project, release: str, service: str, client) -> dict[str, str]:
    """Push both tags of a built image; return registry reference -> digest."""
    import docker.errors

    registry = project.settings.registry
    shown = shown_registry(registry)
    record = image_record.load(project, release, service)
    own = project.layout.push_record(release, service)
    own.unlink(missing_ok=True)
    made: list[tuple[str, str]] = []
    digests: dict[str, str] = {}
    try:
        for ref in record.tags:
            repository, _, tag = ref.rpartition(":")
            target = f"{registry}/{repository}"
            made.append((target, tag))
            try:
                digest = push_tag(client, record.image_id, target, tag)
            except RegistryFailure as failure:
                raise PushError(str(failure), hint=f"check that {shown} is reachable and accepts pushes (docker login); "
                                                   "the local image is built") from None
            if digest:
                digests[f"{shown}/{repository}:{tag}"] = digest
    except BaseException:
        for target, tag in made:
            with contextlib.suppress(docker.errors.APIError):
                client.remove_image(f"{target}:{tag}", noprune=True)
        raise
    PushRecord(record.image_id, record.input_hash, shown, digests).write(own)
    return digests
