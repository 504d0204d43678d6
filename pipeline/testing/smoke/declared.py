"""Checks declared as data: the ``checks:`` list of ``deploy/<service>/deploy.yaml``, run by one generic runner.

Owns reading those lists (each entry named, with its file and line for
messages) and running them in order through the smoke's client container, as
an operator would type them:

- ``openstack: <arguments>``: python-openstackclient (with its plugins) in the
  client container; ``run: <shell>``: any command there (another client's own
  CLI, a script of the deploy folder), or with ``in: <process>`` in a running
  container of the service.
- ``expect``: what the output (JSON: ``-f json`` is added to ``openstack``)
  must hold: a mapping of fields (``a.b`` reaches into objects) to a value, or
  to a list of values any of which will do; for a list of rows, some row must
  hold it.  A list of such mappings: each must hold.
- ``until``: the same form, asked again every two seconds until it holds (or
  ``timeout`` seconds pass, default 120); ``fail_if`` stops the waiting at once
  (a state such as ERROR).
- ``capture``: ``{name: field}`` keeps a value of the output (the first row
  that holds ``expect``/``until``) for later commands as ``@name@``, beside the
  run's values (``@region@``, ``@keystone_url@``, ...); captures are shared by
  the services of the run (``@glance.image_id@`` is glance's).
- ``files``: files of the deploy folder (templates like its configuration)
  copied into the client container under ``/smoke/<service>/`` before the
  first check.

A failed expectation raises ``CheckFailed`` naming the command, what was
expected and what came back.
"""

from __future__ import annotations

import functools
import json
import shlex
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.core.errors import ConfigError
from pipeline.testing.smoke.checks import CLIENT, Check, CheckFailed, Context, indent
from pipeline.testing.smoke.deployment import Declared, fill, render
from pipeline.testing.smoke.plane import ConfigFile, files_archive

POLL = 2.0


# --- matching ----------------------------------------------------------------------------------


def _get(item: Any, path: str) -> Any:
    """``a.b`` of a JSON object (``None`` when absent)."""
    for part in path.split("."):
        if not isinstance(item, Mapping) or part not in item:
            return None
        item = item[part]
    return item


def _same(found: Any, wanted: Any) -> bool:
    if isinstance(wanted, list):
        return any(_same(found, w) for w in wanted)
    if isinstance(wanted, bool) or isinstance(found, bool):
        return str(found).lower() == str(wanted).lower()
    return found == wanted or (found is not None and str(found) == str(wanted))


def _holds(row: Any, pattern: Mapping[str, Any]) -> bool:
    return all(_same(_get(row, key), value) for key, value in pattern.items())


def matching(output: Any, patterns: tuple[Mapping[str, Any], ...]) -> Any:
    """The row (or object) holding the first pattern when every pattern is held by some row; else ``None``."""
    rows = output if isinstance(output, list) else [output]
    first = None
    for pattern in patterns:
        row = next((r for r in rows if _holds(r, pattern)), None)
        if row is None:
            return None
        first = row if first is None else first
    return first if first is not None else (rows[0] if rows else None)


# --- running -------------------------------------------------------------------------------------


@dataclass
class Runner:
    """Runs one service's declared checks; ``values`` are the run's template values and the captures."""

    service: str
    folder_files: list[tuple[str, Path]]  # (name, path) of the deploy folder's files for the client
    values: dict[str, Any]
    copied: bool = False

    def checks(self, declared: tuple[Declared, ...]) -> list[Check]:
        return [Check(self.service, item.name, functools.partial(self.run, item=item)) for item in declared]

    def _copy_files(self, ctx: Context) -> None:
        if self.copied or not self.folder_files:
            return
        files = [ConfigFile(f"/smoke/{self.service}/{name}", render(path, self.values).encode(), 0o644)
                 for name, path in self.folder_files]
        ctx.plane.client.put_archive(ctx.plane.containers[CLIENT].id, "/", files_archive(files))
        self.copied = True

    def _command(self, ctx: Context, item: Declared) -> tuple[list[str], str]:
        values = {**self.values, **ctx.facts.setdefault("captured", {})}
        if item.openstack:
            args = shlex.split(fill(item.openstack, values, f"{item.where}: openstack"))
            return ["openstack", *args, *(["-f", "json"] if item.parsed else [])], CLIENT
        script = fill(item.run, values, f"{item.where}: run", shlex.quote)
        return ["sh", "-ec", script], item.container or CLIENT

    def _ask(self, ctx: Context, item: Declared) -> Any:
        command, container = self._command(ctx, item)
        code, out, err = ctx.plane.exec(container, command)
        shown = shlex.join(command) if command[0] == "openstack" else command[-1]
        if code != 0:
            raise CheckFailed(f"`{shown}`{'' if container == CLIENT else f' in {container}'} exited {code}:\n"
                              f"{indent(err or out)}")
        if not item.parsed:
            return out
        try:
            return json.loads(out) if out.strip() else None
        except json.JSONDecodeError:
            raise CheckFailed(f"`{shown}` printed no JSON:\n{indent(out)}") from None

    def run(self, ctx: Context, item: Declared) -> str:
        self._copy_files(ctx)
        started = time.monotonic()
        while True:
            output = self._ask(ctx, item)
            if item.fail_if and matching(output, item.fail_if) is not None:
                raise CheckFailed(f"{item.name}: the answer holds {_show(item.fail_if)}: {_brief(output)}")
            wanted = item.until or item.expect
            row = matching(output, wanted) if wanted else (output[0] if isinstance(output, list) and output else output)
            if row is not None or not wanted:
                break
            if not item.until:
                raise CheckFailed(f"{item.name}: expected {_show(wanted)}, the answer was: {_brief(output)}")
            if time.monotonic() - started > item.timeout:
                raise CheckFailed(f"{item.name}: not {_show(wanted)} after {item.timeout:.0f} s (last answer: "
                                  f"{_brief(output)})")
            time.sleep(POLL)
        if item.until and item.expect and matching(output, item.expect) is None:
            raise CheckFailed(f"{item.name}: expected {_show(item.expect)}, the answer was: {_brief(output)}")
        captured = ctx.facts.setdefault("captured", {})
        for name, path in item.capture.items():
            value = _get(row, path)
            if value is None:
                raise CheckFailed(f"{item.name}: the answer has no {path} to keep as @{name}@: {_brief(output)}")
            captured[name] = captured[f"{self.service}.{name}"] = str(value)
        return _detail(row, wanted, item.capture, time.monotonic() - started if item.until else None)


def _show(patterns: tuple[Mapping[str, Any], ...]) -> str:
    return " and ".join(", ".join(f"{k}={v}" for k, v in p.items()) for p in patterns)


def _brief(output: Any) -> str:
    return json.dumps(output)[:600] if not isinstance(output, str) else output.strip()[-600:]


def _detail(row: Any, wanted: tuple[Mapping[str, Any], ...], capture: Mapping[str, str], waited: float | None) -> str:
    """A short line for the report: the fields checked and kept, as the answer had them."""
    keys = list(dict.fromkeys([*(k for p in wanted[:1] for k in p), *capture.values()]))
    parts = []
    for key in keys:
        value = _get(row, key)
        text = str(value)
        parts.append(f"{key}={text[:8] if len(text) == 36 and text.count('-') == 4 else text[:40]}")
    if waited is not None:
        parts.append(f"after {waited:.0f} s")
    return ", ".join(parts)


def runner_for(service: str, folder: Path, files: tuple[str, ...], values: dict[str, Any]) -> Runner:
    """The runner of a service's checks, with the deploy folder's ``files`` to copy into the client."""
    missing = [name for name in files if not (folder / name).is_file()]
    if missing:
        raise ConfigError(f"{folder / 'deploy.yaml'}: files: {', '.join(missing)} not in {folder}")
    return Runner(service, [(name, folder / name) for name in files], values)
