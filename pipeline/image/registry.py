"""Registries, as the engine talks to them: pull and push with every streamed item checked.

docker-py reports most registry failures as items of the pull or push
stream, not as exceptions (only a refused request raises): both are turned
into one message here.  Credentials are the engine's own (``docker login``
on the host whose configuration docker-py reads); registry names are shown
without user-info.  Callers turn a ``RegistryFailure`` into their own error
(a push of the release's images, the shared layer cache).
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.core.redact import public_url, redact

# What a registry says when it does not have a tag (registry:2 and Docker Hub wordings).
_MISSING = ("manifest unknown", "not found", "does not exist", "no such manifest")


@dataclass
class RegistryFailure(Exception):
    message: str
    missing: bool = False  # the registry answered: it has no such image

    def __str__(self) -> str:
        return self.message


def shown(registry: str) -> str:
    """``host[:port][/path]`` without any user-info."""
    return public_url(f"//{registry}").lstrip("/")


def _check(items, what: str) -> str:
    digest = ""
    for item in items:
        if "error" in item:
            text = redact(str(item["error"]).strip())
            raise RegistryFailure(f"{what}: {text}", missing=any(m in text.lower() for m in _MISSING))
        digest = item.get("aux", {}).get("Digest") or digest
    return digest


def pull(client, repository: str, tag: str) -> None:
    """Pull ``repository:tag`` onto the engine; ``RegistryFailure`` (with ``missing``) when it cannot."""
    import docker.errors

    what = f"pull of {shown(repository)}:{tag}"
    try:
        _check(client.pull(repository, tag=tag, stream=True, decode=True), what)
    except docker.errors.APIError as exc:
        text = redact(str(exc.explanation or exc))
        raise RegistryFailure(f"{what}: {text}",
                              missing=exc.status_code == 404 or any(m in text.lower() for m in _MISSING)) from None


def push(client, image_id: str, repository: str, tag: str) -> str:
    """Tag ``image_id`` as ``repository:tag`` and push it; the pushed manifest's digest."""
    import docker.errors

    client.tag(image_id, repository, tag)
    what = f"push of {shown(repository)}:{tag}"
    try:
        return _check(client.push(repository, tag=tag, stream=True, decode=True), what)
    except docker.errors.APIError as exc:
        raise RegistryFailure(f"{what}: {redact(str(exc.explanation or exc))}") from None
