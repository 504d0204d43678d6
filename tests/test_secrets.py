"""Credentials never leave the host: a private index and an authenticating proxy, a real build, then a search
of every output (stdout, stderr, every file of the work directory and cache, the history and configuration
of every image on the engine) for the secrets."""

from __future__ import annotations

import base64
import http.server
import ipaddress
import json
import os
import select
import socket
import subprocess
import threading
import urllib.request
from typing import ClassVar

import docker
import pytest
from conftest import Layout, invoke

pytestmark = [pytest.mark.docker, pytest.mark.network]

INDEX_SECRET, PROXY_SECRET = "Idx-s3cret-8812", "Prx-s3cret-4471"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class Proxy(http.server.BaseHTTPRequestHandler):
    """A forward proxy that wants Proxy-Authorization: plain http (apt, debootstrap) and CONNECT (https)."""

    seen: ClassVar[list[str]] = []

    def _authorised(self) -> bool:
        if self.headers.get("Proxy-Authorization") != basic("builder", PROXY_SECRET):
            self.send_response(407)
            self.send_header("Proxy-Authenticate", 'Basic realm="test"')
            self.end_headers()
            return False
        return True

    def do_GET(self):
        if not self._authorised():
            return
        self.seen.append(self.path)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("proxy-authorization", "proxy-connection")}
        try:
            with urllib.request.urlopen(urllib.request.Request(self.path, headers=headers), timeout=120) as upstream:
                body = upstream.read()
                self.send_response(upstream.status)
                for key, value in upstream.headers.items():
                    if key.lower() not in ("transfer-encoding", "connection"):
                        self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)
        except urllib.error.HTTPError as exc:
            self.send_response(exc.code)
            self.end_headers()

    def do_CONNECT(self):
        if not self._authorised():
            return
        self.seen.append(f"CONNECT {self.path}")
        host, port = self.path.rsplit(":", 1)
        upstream = socket.create_connection((host, int(port)), timeout=120)
        self.send_response(200)
        self.end_headers()
        sockets = [self.connection, upstream]
        while True:
            readable, _, _ = select.select(sockets, [], [], 120)
            if not readable:
                break
            for sock in readable:
                data = sock.recv(65536)
                if not data:
                    upstream.close()
                    return
                (upstream if sock is self.connection else self.connection).sendall(data)

    def log_message(self, *args):
        pass


class Index(http.server.BaseHTTPRequestHandler):
    """A private index: PyPI's simple pages, for callers with the right credentials only."""

    def do_GET(self):
        if self.headers.get("Authorization") != basic("builder", INDEX_SECRET):
            self.send_response(401)
            self.end_headers()
            return
        accept = self.headers.get("Accept", "application/vnd.pypi.simple.v1+json")
        request = urllib.request.Request("https://pypi.org" + self.path, headers={"Accept": accept})
        try:
            with urllib.request.urlopen(request, timeout=120) as upstream:
                body = upstream.read()
                self.send_response(200)
                self.send_header("Content-Type", upstream.headers.get("Content-Type"))
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
        except urllib.error.HTTPError as exc:
            self.send_response(exc.code)
            self.end_headers()

    def log_message(self, *args):
        pass


def serve(handler, address: str = "127.0.0.1") -> tuple[http.server.ThreadingHTTPServer, int]:
    server = http.server.ThreadingHTTPServer((address, 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


def test_no_credential_anywhere_after_a_build_through_a_private_index_and_a_proxy(tmp_path, upstream):
    Proxy.seen = []
    client = docker.from_env()
    # Build steps run in containers: the proxy must be reachable from them, as a site's proxy is.
    config = client.api.inspect_network("bridge")["IPAM"]["Config"][0]
    gateway = config.get("Gateway") or str(next(ipaddress.ip_network(config["Subnet"]).hosts()))
    proxy, proxy_port = serve(Proxy, gateway)
    index, index_port = serve(Index)
    before = {image.id for image in client.images.list(all=True)}
    prefix = f"secrets-{os.getpid()}"  # fresh base images: apt and debootstrap must go through the proxy
    layout = Layout(tmp_path / "project", upstream.path.parent)
    layout.release("2025.2", {"demo": "2.0.1"})
    proxy_url = f"http://builder:{PROXY_SECRET}@{gateway}:{proxy_port}"
    layout.settings_overrides.update(
        cache_dir=str(tmp_path / "cache"), image_prefix=prefix,
        index_url=f"http://builder:{INDEX_SECRET}@127.0.0.1:{index_port}/simple",
        http_proxy=proxy_url, https_proxy=proxy_url, no_proxy="127.0.0.1,localhost")
    try:
        result = invoke(layout, "build", "--release", "2025.2", "--service", "demo", env={"UV_CACHE_DIR": str(tmp_path / "uv")})
        assert result.returncode == 0, result.stderr[-4000:]
        assert any("deb.debian.org" in s for s in Proxy.seen), Proxy.seen[:5]  # debootstrap and apt used the proxy
        assert any(s.startswith("CONNECT") for s in Proxy.seen)  # host-side downloads too

        outputs = {"stdout": result.stdout, "stderr": result.stderr}
        for root in (tmp_path / "project" / "build", tmp_path / "cache"):
            for path in root.rglob("*"):
                if path.is_file() and path.stat().st_size < 5_000_000:
                    outputs[str(path)] = path.read_bytes().decode("utf-8", "replace")
        made = [image for image in client.images.list(all=True) if image.id not in before]
        assert made, "the build made no image"
        for image in made:
            outputs[f"history {image.id}"] = json.dumps(client.api.history(image.id))
            outputs[f"inspect {image.id}"] = json.dumps(client.api.inspect_image(image.id))
        outputs["docker history --no-trunc"] = "\n".join(
            subprocess.run(["docker", "history", "--no-trunc", image.id], capture_output=True, text=True).stdout
            for image in made)
        for where, text in outputs.items():
            for secret in (INDEX_SECRET, PROXY_SECRET):
                assert secret not in text, f"{secret} found in {where}"
    finally:
        proxy.shutdown()
        index.shutdown()
        for image in client.images.list(name=f"{prefix}/*"):
            for tag in image.tags:
                client.images.remove(tag, force=True)
