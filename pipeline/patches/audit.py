"""patches.audit: every carried patch against OpenStack's stable branch policy.

Owns the support phase of a release (from ``release.yaml``'s
``release_date``, ``end_of_life`` and ``status``, never the network), the
provenance line of a patch, and the rule set: what in a diff the stable
policy would not accept (schema migrations, API microversions and routes,
RPC and object versions, notification payloads, configuration options
removed or changed, new or raised requirements), a patch that names no
upstream commit, and a fix that a newer configured release neither carries
nor contains upstream.  Rules read the patch's changed lines only, never
its context lines.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from pipeline.core import console
from pipeline.core.releases import Project, Release
from pipeline.patches import upstream
from pipeline.patches.patchfile import HUNK_RE, PatchMeta, read_patch
from pipeline.patches.provenance import provenance
from pipeline.patches.series import all_series, discover
from pipeline.sources.fetch import SourceRecord

# (newer release, component) -> its tree at its ref and its upstream history: read once per audit
NewerCache = dict[tuple[str, str], tuple[SourceRecord, upstream.History | None]]

RULES = {
    "db-schema": "adds or changes a database migration (alembic or sqlalchemy-migrate versions)",
    "http-api": "adds or changes a REST API microversion or route",
    "rpc-api": "changes an RPC API version or a versioned object's version",
    "notification": "changes a notification payload or its version",
    "config": "removes a configuration option, or changes its default or type",
    "new-dependency": "adds a requirement or raises a minimum version",
    "no-upstream-reference": "names no upstream commit: no Change-Id, no cherry-picked-from line, no upstream commit "
                             "in its header",
    "missing-in-newer-release": "a newer configured release neither carries it nor contains it upstream",
}
PHASES = {
    "I": "phase I (first 6 months): all appropriate bug fixes",
    "II": "phase II (6 to 12 months): critical fixes and security patches only",
    "III": "phase III (older): security patches only",
    "end of life": "end of life: no fixes upstream",
    "unmaintained": "unmaintained: fixes only by its own maintainers",
    "development": "not released yet",
    "unknown": "no release_date in release.yaml",
}
MIGRATION_RE = re.compile(r"(^|/)(alembic|alembic_migrations|migrations|migrate_repo)/versions/[^/]+\.py$")
API_FILE_RE = re.compile(r"(api_version_request\.py|microversions?\.py|rest_api_version_history|(^|/)routes?\.py$)")
API_LINE_RE = re.compile(r"api_version\(|MAX_API_VERSION|add_url_rule\(|mapper\.(connect|resource)\(|"
                         r"construct_resource_map\(|\b(min|max)_version\s*=")
RPC_LINE_RE = re.compile(r"RPC_API_VERSION\s*=|messaging\.Target\([^)]*version|\bversion_cap\b|can_send_version\(|"
                         r"VERSION_ALIASES")
OBJECT_VERSION_RE = re.compile(r"^\s*VERSION\s*=\s*['\"]\d+\.\d+['\"]")
NOTIFICATION_FILE_RE = re.compile(r"(^|/)notifications?/objects/|(^|/)notification_samples/")
NOTIFICATION_LINE_RE = re.compile(r"NotificationPayload|notification_sample\(|NotificationBase")
OPT_RE = re.compile(r"cfg\.(\w*Opt)\(\s*['\"]([\w.-]+)['\"]")
CONF_FILE_RE = re.compile(r"(^|/)(conf|cfg)(/|\.py$)|opts?\.py$|options\.py$|config\.py$")
DEFAULT_RE = re.compile(r"\bdefault\s*=")
REQUIREMENT_FILE_RE = re.compile(r"(^|/)([\w-]*requirements\.txt|setup\.cfg|pyproject\.toml)$")


@dataclass(frozen=True)
class Finding:
    release: str
    component: str
    patch: str
    rule: str
    detail: str
    phase: str
    provenance: str


# --- the support phase ----------------------------------------------------------------------


def phase(release: Release, today: datetime.date) -> str:
    if release.status == "end-of-life" or (release.end_of_life and today >= release.end_of_life):
        return "end of life"
    if release.status == "unmaintained":
        return "unmaintained"
    if release.release_date is None:
        return "unknown"
    if today < release.release_date:
        return "development"
    d = release.release_date
    months = (today.year - d.year) * 12 + today.month - d.month - (today.day < d.day)
    return "I" if months < 6 else "II" if months < 12 else "III"


def provenance_text(meta: PatchMeta) -> str:
    origin = provenance(meta)
    parts = [f"upstream commit {c[:12]}" for c in origin.cherry_picked_from]
    if origin.change_id:
        parts.append(f"Change-Id {origin.change_id[:12]}")
    parts += [f"bug {number}" for _, number in origin.bugs] + list(origin.cves)
    return ", ".join(parts) or "none"


# --- the diff's changed lines ------------------------------------------------------------------


def changed_lines(diff_text: str) -> dict[str, tuple[list[str], list[str], list[str]]]:
    """Per file: (added lines, removed lines, hunk headers), from a git or unified diff."""
    files: dict[str, tuple[list[str], list[str], list[str]]] = {}
    current: str | None = None
    old_left = new_left = 0
    lines = diff_text.split("\n")
    for index, line in enumerate(lines):
        if old_left > 0 or new_left > 0:
            if current is None:
                continue
            if line.startswith("+"):
                files[current][0].append(line[1:])
                new_left -= 1
            elif line.startswith("-"):
                files[current][1].append(line[1:])
                old_left -= 1
            elif line.startswith("\\"):
                continue
            else:
                old_left -= 1
                new_left -= 1
            continue
        if line.startswith("diff --git "):
            m = re.match(r'^diff --git "?a/.*?"? "?b/(.*?)"?$', line)
            current = m.group(1) if m else None
        elif line.startswith("+++ ") and index > 0 and lines[index - 1].startswith("--- "):
            target = line[4:].split("\t")[0]
            if target != "/dev/null":
                current = target[2:] if target.startswith("b/") else target
            elif current is None:
                old = lines[index - 1][4:].split("\t")[0]
                current = old[2:] if old.startswith("a/") else old
        elif (m := HUNK_RE.match(line)) and current is not None:
            files.setdefault(current, ([], [], []))[2].append(m.group(5))
            old_left = int(m.group(2)) if m.group(2) is not None else 1
            new_left = int(m.group(4)) if m.group(4) is not None else 1
    return files


def _quote(line: str) -> str:
    line = line.strip()
    return f"`{line[:80]}{'...' if len(line) > 80 else ''}`"


def _requirements(lines: list[str]) -> dict[str, Requirement]:
    found: dict[str, Requirement] = {}
    for line in lines:
        cleaned = line.split("#", 1)[0].strip().strip("\"',")
        if not cleaned or cleaned.startswith(("-", "[")) or re.match(r"^[\w.-]+\s*=(\s|$)", cleaned):
            continue  # options, sections and `key =` lines of setup.cfg or pyproject.toml
        try:
            req = Requirement(cleaned)
        except InvalidRequirement:
            continue
        found[canonicalize_name(req.name)] = req
    return found


def _minimum(req: Requirement) -> Version | None:
    values = []
    for spec in req.specifier:
        if spec.operator in (">=", ">", "==", "===", "~="):
            try:
                values.append(Version(spec.version.rstrip(".*")))
            except InvalidVersion:
                continue
    return max(values, default=None)


def content_findings(meta: PatchMeta) -> list[tuple[str, str]]:
    """(rule, detail) for what the patch's changed lines do."""
    found: list[tuple[str, str]] = []
    for path, (added, removed, headers) in changed_lines(meta.text).items():
        changed = added + removed
        if MIGRATION_RE.search(path):
            is_new = any(c.new_path == path and c.old_path is None for c in meta.changes)
            found.append(("db-schema", f"{'adds' if is_new else 'changes'} the migration {path}"))
        if API_FILE_RE.search(path) and changed:
            found.append(("http-api", f"changes {path}"))
        elif line := next((l for l in changed if API_LINE_RE.search(l)), None):
            found.append(("http-api", f"changes {_quote(line)} in {path}"))
        if line := next((l for l in changed if RPC_LINE_RE.search(l)), None):
            found.append(("rpc-api", f"changes {_quote(line)} in {path}"))
        elif "/objects/" in f"/{path}" and not NOTIFICATION_FILE_RE.search(path) and \
                (line := next((l for l in changed if OBJECT_VERSION_RE.search(l)), None)):
            found.append(("rpc-api", f"changes the object version {_quote(line)} in {path}"))
        if NOTIFICATION_FILE_RE.search(path) and changed:
            found.append(("notification", f"changes {path}"))
        elif line := next((l for l in changed if NOTIFICATION_LINE_RE.search(l)), None):
            found.append(("notification", f"changes {_quote(line)} in {path}"))
        found += _config_findings(path, added, removed, headers)
        if REQUIREMENT_FILE_RE.search(path):
            before, after = _requirements(removed), _requirements(added)
            for name, req in after.items():
                if name not in before:
                    found.append(("new-dependency", f"adds {req} to {path}"))
                elif (new_min := _minimum(req)) and (old_min := _minimum(before[name])) and new_min > old_min:
                    found.append(("new-dependency", f"raises the minimum of {req.name} from {old_min} to {new_min} in {path}"))
    return found


def _config_findings(path: str, added: list[str], removed: list[str], headers: list[str]) -> list[tuple[str, str]]:
    found = []
    before = {m.group(2): m.group(1) for l in removed if (m := OPT_RE.search(l))}
    after = {m.group(2): m.group(1) for l in added if (m := OPT_RE.search(l))}
    for name, kind in before.items():
        if name not in after:
            found.append(("config", f"removes the option {name} ({kind}) in {path}"))
        elif after[name] != kind:
            found.append(("config", f"changes the type of the option {name} from {kind} to {after[name]} in {path}"))
    options_file = CONF_FILE_RE.search(path) or any("Opt(" in h or "_opts" in h for h in headers)
    # A removed or retyped option takes its default line with it: that is one finding, not two.
    if not found and options_file and (line := next((l for l in removed if DEFAULT_RE.search(l)), None)):
        new = next((l for l in added if DEFAULT_RE.search(l)), None)
        found.append(("config", f"changes a default in {path}: {_quote(line)}" + (f" -> {_quote(new)}" if new else "")))
    return found


# --- the audit --------------------------------------------------------------------------------


def _header_commit(meta: PatchMeta) -> str | None:
    first = meta.text.split("\n", 1)[0]
    m = upstream.COMMIT_HEADER_RE.match(first)
    return m.group(1) if m else None


def _same_change(a: PatchMeta, b: PatchMeta) -> bool:
    pa, pb = provenance(a), provenance(b)
    if pa.change_id and pa.change_id == pb.change_id:
        return True
    if set(pa.cherry_picked_from) & set(pb.cherry_picked_from):
        return True
    return a.subject.strip().lower() == b.subject.strip().lower()


def audit(project: Project, releases: list[str] | None, components: list[str], today: datetime.date) -> tuple[dict[str, Any], list[dict[str, Any]], list[Finding]]:
    """(phase per release, a row per patch, every finding)."""
    wanted = releases or list(project.releases)
    phases = {r: phase(project.release(r), today) for r in wanted}
    rows: list[dict[str, Any]] = []
    findings: list[Finding] = []
    newer_cache: NewerCache = {}
    for release, name in all_series(project, wanted):
        if components and name not in components:
            continue
        component = project.component(release, name)
        hist = upstream.history(project, component)
        for patch in discover(project.layout.series_dir(name, release))[0]:
            meta = read_patch(project, patch)
            label = project.layout.repo_rel(patch)
            origin_text = provenance_text(meta)
            rules = content_findings(meta)
            origin = provenance(meta)
            if not origin.change_id and not origin.cherry_picked_from:
                header = _header_commit(meta)
                if hist is None:
                    rules.append(("no-upstream-reference", "no Change-Id and no cherry-picked-from line" + (
                        f"; its header names commit {header[:12]}, which could not be checked (no upstream git history)"
                        if header else "")))
                elif not (header and hist.resolve(header)):
                    rules.append(("no-upstream-reference", "no Change-Id, no cherry-picked-from line" + (
                        f", and its header's commit {header[:12]} is not in {component.public_url}" if header else
                        ", and no commit header")))
            for newer in sorted(r for r in project.releases if r > release):
                if name not in project.release(newer).refs:
                    continue  # not built from source there: upstream's release is used as it is
                detail = _missing_in(project, newer, name, patch, meta, newer_cache)
                if detail:
                    rules.append(("missing-in-newer-release", detail))
            for rule, detail in rules:
                findings.append(Finding(release, name, label, rule, detail, phases[release], origin_text))
            rows.append({"release": release, "component": name, "patch": label, "provenance": origin_text,
                         "rules": [rule for rule, _ in rules]})
    return phases, rows, findings


def _missing_in(project: Project, newer: str, name: str, patch: Path, meta: PatchMeta, cache: NewerCache) -> str | None:
    """Why ``newer`` lacks the patch, or None when it carries it or its ref contains it."""
    for other in discover(project.layout.series_dir(name, newer))[0]:
        if _same_change(meta, read_patch(project, other)):
            return None
    component = project.component(newer, name)
    if (newer, name) not in cache:
        cache[(newer, name)] = (upstream.tree_at(project, component, component.ref), upstream.history(project, component))
    source, hist = cache[(newer, name)]
    if upstream.find(patch, meta, project.layout.resolve(source.tree), source.commit, source.upstream_revision, hist,
                     None):
        return None
    how = "Change-Id, cherry-picked-from or content" if hist else "content (it does not apply in reverse)"
    return f"{newer} neither carries it nor contains it upstream at {name} {component.ref} (checked by {how})"


def as_report(phases: dict[str, Any], rows: list[dict[str, Any]], findings: list[Finding]) -> console.Report:
    """What ``invoke patches.audit`` prints: the findings as JSON; the phases, a row per patch and each finding."""
    return console.Report([asdict(f) for f in findings], [
        console.Table([console.Column("release"), console.Column("support phase", "phase")],
                      [{"release": r, "phase": PHASES[p]} for r, p in phases.items()]),
        "",
        console.Table([console.Column("release"), console.Column("component"), console.Column("patch"),
                       console.Column("provenance"), console.Column("findings", lambda r: ", ".join(r["rules"]) or "-")],
                      rows, empty="no patches"),
        *(f"  {f.patch}: {f.rule}: {f.detail}" for f in findings),
    ])
