"""Downloads over HTTP(S) and file:// with the configured CA bundle and proxies.

One place decides how the host talks to package indexes and constraint URLs:
the ``Network`` settings (offline, CA bundle, proxies) are applied here, a
body shorter than its Content-Length is an error (a truncated download never
reaches a cache), transient failures are retried, and URLs in messages are
redacted.
"""

from __future__ import annotations

import base64
import http.client
import ssl
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from pipeline.core.errors import FetchError
from pipeline.core.redact import public_url
from pipeline.core.settings import Network

RETRIES = 2


def _opener(network: Network) -> urllib.request.OpenerDirector:
    context = ssl.create_default_context(cafile=network.cafile())
    proxies = {k: v for k, v in (("http", network.http_proxy), ("https", network.https_proxy)) if v}
    handlers: list[urllib.request.BaseHandler] = [urllib.request.HTTPSHandler(context=context),
                                                  urllib.request.ProxyHandler(proxies)]
    return urllib.request.build_opener(*handlers)


def _bypass_proxy(url: str, network: Network) -> bool:
    host = urlsplit(url).hostname or ""
    for entry in (e.strip() for e in network.no_proxy.split(",") if e.strip()):
        if entry == "*" or host == entry.lstrip(".") or host.endswith("." + entry.lstrip(".")):
            return True
    return False


def _with_auth(url: str, network: Network) -> tuple[str, dict[str, str]]:
    """urllib does not send a URL's user-info: move it into an Authorization header.

    Like pip, the index's credentials also apply to files on the index's host
    (index pages link their files without credentials).
    """
    parts = urlsplit(url)
    if not parts.username:
        index = urlsplit(network.index_url)
        if not index.username or (index.hostname, index.port, index.scheme) != (parts.hostname, parts.port, parts.scheme):
            return url, {}
        token = f"{unquote(index.username)}:{unquote(index.password or '')}"
        return url, {"Authorization": "Basic " + base64.b64encode(token.encode()).decode()}
    token = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
    clean = urlunsplit((parts.scheme, parts.netloc.rsplit("@", 1)[1], parts.path, parts.query, parts.fragment))
    return clean, {"Authorization": "Basic " + base64.b64encode(token.encode()).decode()}


def fetch_url(url: str, network: Network, accept: str | None = None, what: str = "") -> tuple[bytes, str]:
    """Return (body, final URL); raise FetchError naming the (redacted) URL on any failure."""
    shown = public_url(url)
    if network.offline and not url.startswith("file:"):
        raise FetchError(f"{what or shown}: not in the cache, and offline mode forbids downloading {shown}",
                         hint="run once without --offline (and without pipeline.offline) to fill the cache")
    target, headers = _with_auth(url, network)
    headers["User-Agent"] = "openstack-patches"
    if accept:
        headers["Accept"] = accept
    opener = _opener(network) if not _bypass_proxy(url, network) else _opener(
        Network(network.offline, network.index_url, network.ca_bundle, "", "", ""))
    last: Exception | None = None
    for attempt in range(RETRIES + 1):
        request = urllib.request.Request(target, headers=headers)
        try:
            with opener.open(request, timeout=120) as response:
                body = response.read()
                expected = response.headers.get("Content-Length")
                if expected is not None and expected.isdigit() and int(expected) != len(body):
                    raise http.client.IncompleteRead(body, int(expected) - len(body))
                return body, response.geturl()
        except urllib.error.HTTPError as exc:
            if exc.code < 500 or attempt == RETRIES:
                raise FetchError(f"{shown}: HTTP {exc.code} {exc.reason}",
                                 hint="check the URL and, for a private index, its credentials") from None
            last = exc
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            last = exc
        time.sleep(0.5 * (attempt + 1))
    reason = getattr(last, "reason", last)
    if isinstance(last, http.client.IncompleteRead):
        reason = f"the download was cut off ({len(last.partial)} bytes received)"
    raise FetchError(f"{shown}: cannot be read: {reason}",
                     hint="check network access, the proxy settings (http_proxy/https_proxy) and, behind a TLS proxy, ca_bundle")


def read_local_or_fetch(url: str, network: Network, what: str = "") -> bytes:
    if url.startswith("file:"):
        path = Path(urllib.request.url2pathname(urlsplit(url).path))
        try:
            return path.read_bytes()
        except OSError as exc:
            raise FetchError(f"{what + ': ' if what else ''}{path} cannot be read: {exc.strerror}",
                             hint=f"check that {path} exists") from None
    return fetch_url(url, network, what=what)[0]
