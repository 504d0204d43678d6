"""Downloads over HTTP(S) and file:// with the configured CA bundle.

One place decides how the pipeline talks to package indexes and constraint
URLs, so a corporate proxy CA needs configuring once (``ca_bundle``).
"""

from __future__ import annotations

import ssl
import urllib.error
import urllib.request
from pathlib import Path

from .errors import FetchError


def fetch_url(url: str, ca_bundle: Path | None = None, accept: str | None = None) -> tuple[bytes, str]:
    """Return (body, final URL); raise FetchError naming the URL on any failure."""
    headers = {"User-Agent": "openstack-patches"}
    if accept:
        headers["Accept"] = accept
    context = ssl.create_default_context(cafile=str(ca_bundle) if ca_bundle else None)
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=120, context=context) as response:
            return response.read(), response.geturl()
    except urllib.error.HTTPError as exc:
        raise FetchError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise FetchError(
            f"{url}: cannot be read: {reason}",
            hint="check the URL, network access and, behind a TLS proxy, the ca_bundle setting",
        ) from None
