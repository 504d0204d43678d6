"""Push stage: the image's tags to the configured registry, and the record ``push.json``.

A failed push leaves nothing behind: the local registry tags it made are
removed again, and no record claims a push that did not happen.  Registry
credentials come from the engine's own login (``docker login``); the
registry's URL is shown without any user-info.
"""

from __future__ import annotations

from .config import Project
from .errors import PushError
from .files import write_json
from .redact import public_url, redact
from .sbom import load_image_record


def push(project: Project, release: str, service: str, client) -> dict[str, str]:
    """Push both tags of a built image; return registry reference -> digest."""
    import docker.errors

    registry = project.settings.registry
    shown = public_url(f"//{registry}").lstrip("/")
    record = load_image_record(project, release, service)
    own = project.layout.push_record(release, service)
    own.unlink(missing_ok=True)
    made: list[tuple[str, str]] = []
    digests: dict[str, str] = {}
    try:
        for ref in record["tags"]:
            repository, _, tag = ref.rpartition(":")
            target = f"{registry}/{repository}"
            client.tag(record["image_id"], target, tag)
            made.append((target, tag))
            try:
                items = list(client.push(target, tag=tag, stream=True, decode=True))
            except docker.errors.APIError as exc:
                items = [{"error": str(exc.explanation or exc)}]
            for item in items:
                if "error" in item:
                    raise PushError(f"push of {shown}/{repository}:{tag} failed: {redact(item['error'].strip())}",
                                    hint=f"check that {shown} is reachable and accepts pushes (docker login); the local image is built")
                digest = item.get("aux", {}).get("Digest")
                if digest:
                    digests[f"{shown}/{repository}:{tag}"] = digest
    except BaseException:
        for target, tag in made:
            try:
                client.remove_image(f"{target}:{tag}", noprune=True)
            except docker.errors.APIError:
                pass
        raise
    write_json(own, {"image_id": record["image_id"], "input_hash": record["input_hash"], "registry": shown,
                     "digests": digests})
    return digests
