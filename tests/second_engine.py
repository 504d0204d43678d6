"""A second Docker engine for tests and benchmarks: ``dockerd`` on a loopback TCP port with TLS.

It has its own data root, exec root, pid file and configuration, TLS
certificates made here with openssl (a CA, a server certificate for
127.0.0.1, a client certificate), a unix socket beside the TCP port (for
checks from the test, and for an sshd to hand on), and a bridge of its own
without NAT (``--bridge=<its bridge>``, ``--iptables=false``: its containers
reach no network, and it leaves the host's network and the first engine
alone; ``--bridge=none`` would not: dockerd then deletes the host's
``docker0``, the first engine's bridge).  Stopped and removed on exit.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import docker
from conftest import free_port


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_certificates(directory: Path) -> None:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, as DOCKER_CERT_PATH expects them."""
    directory.mkdir(parents=True)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca-key.pem", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=engine-b test CA", cwd=directory)
    for name, subject, usage in (("server", "/CN=127.0.0.1", "serverAuth\nsubjectAltName=IP:127.0.0.1"),
                                 ("client", "/CN=client", "clientAuth")):
        (directory / f"{name}.ext").write_text(f"extendedKeyUsage={usage}\n")
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}-key.pem", "-out", f"{name}.csr",
                "-subj", subject, cwd=directory)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem", "-CAcreateserial",
                "-out", f"{name}-cert.pem", "-days", "2", "-extfile", f"{name}.ext", cwd=directory)
    # The names docker clients look for in DOCKER_CERT_PATH.
    shutil.copy(directory / "client-cert.pem", directory / "cert.pem")
    shutil.copy(directory / "client-key.pem", directory / "key.pem")


@dataclass
class Engine:
    host: str
    certs: Path
    socket: Path
    root: Path

    def env(self) -> dict[str, str]:
        return {"DOCKER_HOST": self.host, "DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": str(self.certs)}

    def client(self) -> docker.APIClient:
        return docker.APIClient(base_url=f"unix://{self.socket}", version="auto")


@contextmanager
def second_engine() -> Iterator[Engine]:
    """Start engine B, yield it, stop it and remove everything it stored."""
    assert shutil.which("dockerd"), "dockerd is not installed (scripts/setup installs docker.io)"
    # Short paths: containerd's socket lives under the exec root (unix socket paths are limited to 108 bytes).
    base = Path(tempfile.mkdtemp(prefix="engine-b-", dir="/tmp"))
    make_certificates(base / "certs")
    (base / "daemon.json").write_text("{}\n")
    port = free_port()
    certs = base / "certs"
    bridge = f"opb{port}"[:15]
    subprocess.run(["ip", "link", "add", bridge, "type", "bridge"], check=True)
    subprocess.run(["ip", "addr", "add", f"10.{250 + port % 5}.{port % 250}.1/24", "dev", bridge], check=True)
    subprocess.run(["ip", "link", "set", bridge, "up"], check=True)
    log = (base / "dockerd.log").open("w")
    proc = subprocess.Popen(
        ["dockerd", f"--host=tcp://127.0.0.1:{port}", f"--host=unix://{base}/docker.sock", "--tlsverify",
         f"--tlscacert={certs}/ca.pem", f"--tlscert={certs}/server-cert.pem", f"--tlskey={certs}/server-key.pem",
         f"--data-root={base}/data", f"--exec-root={base}/exec", f"--pidfile={base}/docker.pid",
         f"--config-file={base}/daemon.json", f"--bridge={bridge}", "--iptables=false", "--ip-masq=false"],
        stdout=log, stderr=subprocess.STDOUT)
    engine = Engine(f"tcp://127.0.0.1:{port}", certs, base / "docker.sock", base)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                engine.client().ping()
                break
            except Exception:  # noqa: BLE001 - not up yet
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"engine B did not start:\n{(base / 'dockerd.log').read_text()[-2000:]}") from None
                time.sleep(0.5)
        yield engine
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()
        subprocess.run(["umount", "-R", str(base / "data")], capture_output=True)  # nothing is mounted after a clean stop
        subprocess.run(["ip", "link", "delete", bridge], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


