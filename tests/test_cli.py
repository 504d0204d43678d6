"""The command line as a user meets it: help, fast start, no traceback ever, one documented exit code per failure."""

from __future__ import annotations

import contextlib
import http.server
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import REPO_ROOT, invoke, make_patch

from pipeline.core.errors import exit_codes

TASKS = ["fetch", "patch", "constraints", "build", "sbom", "vex", "manifest", "testapply", "patches.list",
         "patches.new", "patches.import", "patches.refresh", "patches.upstreamed", "patches.remove", "patches.renumber",
         "patches.audit", "patches.check", "export", "hotpatch", "cve", "ci.matrix", "advisories", "patches.candidates",
         "config"]
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="mounts a tmpfs (root)")


def test_every_task_and_flag_is_explained():
    listing = subprocess.run(["invoke", "-r", str(REPO_ROOT), "--list"], capture_output=True, text=True, check=True).stdout
    for name in TASKS:
        assert re.search(rf"^\s+{re.escape(name)}\s+\S", listing, re.M), name
        out = subprocess.run(["invoke", "-r", str(REPO_ROOT), "--help", name], capture_output=True, text=True,
                             check=True).stdout
        options = [line for line in out.splitlines() if line.strip().startswith("-")]
        assert options and all(len(option.split(None, 1)) == 2 for option in options), out


def test_readme_lists_every_exit_code():
    readme = (REPO_ROOT / "README.md").read_text()
    table = dict(re.findall(r"^\| (\d+) \| (.+?) \|$", readme, re.M))
    for code, _ in exit_codes():
        assert str(code) in table, f"exit code {code} missing from the README"


def test_listing_tasks_imports_no_heavy_module():
    code = ("import sys; sys.argv=['invoke','--list']; from invoke.main import program\n"
            "try:\n program.run()\nexcept SystemExit: pass\n"
            "print(sorted(m for m in ('docker','cyclonedx','jsonschema','pipeline.provenance.sbom',"
            "'pipeline.image.engine') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_internal_error_is_one_line_and_a_log(tmp_path):
    script = (f"import sys; sys.path.insert(0, {str(REPO_ROOT)!r})\n"
              "from pipeline.core.cli import entry\n"
              "@entry\ndef task():\n    raise RuntimeError('boom')\n"
              "from invoke import Exit\ntry:\n    task()\nexcept Exit as e:\n    sys.exit(e.code)\n")
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: internal error: RuntimeError: boom")
    log = re.search(r"the traceback is in (\S+);", result.stderr).group(1)
    traceback = Path(log).read_text()
    assert "RuntimeError: boom" in traceback and 'line 5, in task' in traceback


@pytest.fixture
def slow_server():
    """A server that answers nothing for 60 s; ``asked`` is set once a request is in."""
    asked = threading.Event()

    class Slow(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            asked.set()
            time.sleep(60)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", asked
    server.shutdown()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_exits_130_with_a_message(layout, slow_server, sig):
    url, asked = slow_server
    layout.release("2025.2", {"demo": "1.0.0"})
    env = {**layout.invoke_env(), "INVOKE_PIPELINE_CONSTRAINTS_URL": f"{url}/{{release}}"}
    # SIGINT as a terminal would deliver it: a test run started in the background (`.ci/run &`) has it
    # ignored, and so would the command (Python leaves an inherited "ignore" alone).
    proc = subprocess.Popen(["invoke", "-r", str(REPO_ROOT), "constraints", "--release", "2025.2"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    # Interrupted in the middle of a step (the download), however long the start took on a busy machine.
    assert asked.wait(timeout=60), "the download never started"
    os.killpg(proc.pid, sig)
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _out, err = proc.communicate()
        pytest.fail(f"still running 30 s after the signal; its stderr:\n{err}")
    assert proc.returncode == 130 and "error: interrupted" in err and "Traceback" not in err, err


@contextlib.contextmanager
def tmpfs(path, options):
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@root_only
def test_read_only_work_directory(layout, upstream, tmp_path):
    layout.release("2025.2", {"demo": "2.0.1"})
    assert invoke(layout, "patch", "--release", "2025.2").returncode == 0
    work = layout.root / "build"
    subprocess.run(["mount", "--bind", str(work), str(work)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(work)], check=True)
        rerun = invoke(layout, "patch", "--release", "2025.2")  # nothing to do: must not need to write
        assert rerun.returncode == 0, rerun.stderr
        layout.add_patch("demo", "2025.2", "0001-x.patch",
                         make_patch(upstream.path, lambda r: (r / "README").write_text("x\n"), "x"))
        result = invoke(layout, "patch", "--release", "2025.2")
        assert result.returncode == 8 and "cannot write" in result.stderr and "Traceback" not in result.stderr
    finally:
        subprocess.run(["umount", "-l", str(work)], check=False)


@root_only
def test_full_disk_says_so_once(layout, upstream, tmp_path):
    layout.release("2025.2", {"demo": "2.0.1"})
    with tmpfs(tmp_path / "small", "size=96k") as small:
        layout.settings_overrides["workdir"] = str(small)
        result = invoke(layout, "patch", "--release", "2025.2")
    assert result.returncode == 9, result.stderr
    assert result.stderr.count("no space left") == 1 and "Traceback" not in result.stderr
    assert len(result.stderr.splitlines()) < 15
