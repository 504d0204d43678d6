"""Credentials never leave the process: redaction of URLs and known secret values.

Every message, log line and record passes through ``redact``.  URLs lose the
password of their user-info (``https://user:***@host/...``); values that the
configuration marks as secret (passwords and tokens of ``index_url``,
``git_base``, ``repos``, ``registry``, ``constraints_url`` and the proxy
settings) are replaced wherever they appear, also outside a URL (git and uv
echo parts of URLs in their own words).  ``public_url`` drops the user-info
entirely, for values that end up in labels and SBOMs.
"""

from __future__ import annotations

import re
import threading
from urllib.parse import unquote, urlsplit, urlunsplit

_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<password>[^@/\s]+)@")
_MASK = "***"
_secrets: set[str] = set()
_lock = threading.Lock()


def register_url(url: str | None) -> None:
    """Remember the password (or token user) of a URL so that it is masked everywhere."""
    if not url or "@" not in url:
        return
    try:
        parts = urlsplit(url)
    except ValueError:
        return
    for value in (parts.password, parts.username if parts.password is None else None):
        if value and len(value) >= 3:
            with _lock:
                _secrets.add(value)
                _secrets.add(unquote(value))


def register_secret(value: str) -> None:
    """Remember a secret this process made (a password of ``invoke smoke``'s control plane) so it is masked everywhere."""
    if value and len(value) >= 8:
        with _lock:
            _secrets.add(value)


def redact(text: str) -> str:
    """``text`` with URL passwords and every registered secret replaced by ``***``."""
    if not text:
        return text
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{_MASK}@", text)
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, _MASK)
    return text


def public_url(url: str) -> str:
    """The URL without any user-info: what labels, SBOMs and the manifest show."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact(url)
    if not parts.netloc or "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
