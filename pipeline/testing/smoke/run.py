"""``invoke smoke``: a release's images proven on a real control plane, from nothing to torn down.

Owns the order of one smoke, as steps of the one runner (``runner.run``, going
on past a failure so every independent service is still tried): the service
images (through the build DAG), the control plane's and the client's images,
then on a network of its own MariaDB, RabbitMQ, memcached and OVN (each
probed until ready), the databases, each service's bootstrap, keystone, the service
users and catalog, every process of every service exactly as its image's
labels say, then the checks (``checks``) and the check that the running code
is the patched code.  Whatever happened, the containers' logs are kept when
anything failed, and everything the run made is removed.
"""

from __future__ import annotations

import functools
import json
import secrets
import shlex
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.build import build
from pipeline.core import console, runner
from pipeline.core.errors import PipelineError, SmokeCheckError, SmokeStartError
from pipeline.core.files import remove, write_atomic
from pipeline.core.redact import redact, register_secret
from pipeline.core.releases import Project
from pipeline.image import record as image_record
from pipeline.image.engine import connect
from pipeline.image.prepare import inputs_of
from pipeline.image.record import ImageRecord
from pipeline.testing.smoke.checks import (
    CLIENT,
    Check,
    CheckFailed,
    Context,
    checks_of,
    patched_code,
)
from pipeline.testing.smoke.declared import runner_for
from pipeline.testing.smoke.deployment import (
    Deployment,
    deploy_file,
    fill,
    render,
    with_requirements,
)
from pipeline.testing.smoke.images import CONTROL_PLANE, SmokeImages, ensure_smoke_images
from pipeline.testing.smoke.plane import ConfigFile, Plane, http_probe

LABEL_NS = "io.openstack-patches"
START_TIMEOUT = 300.0  # an API may take this long to answer (imports, migrations already done)
BOOTSTRAP_TIMEOUT = 900.0
REGION = "RegionOne"

# The HTTP probe of an API process: any answer below 500 means it serves.

# Service users, their roles and the catalog, made in one run of the client's openstacksdk.
REGISTER_SCRIPT = r"""
import json, os, openstack
spec = json.loads(os.environ["SMOKE_REGISTER"])
conn = openstack.connect()
identity = conn.identity
project = identity.find_project("service", domain_id="default") or identity.create_project(name="service", domain_id="default")
roles = [r for r in (identity.find_role("admin"), identity.find_role("service")) if r]
for entry in spec:
    user = identity.find_user(entry["user"], domain_id="default") or identity.create_user(
        name=entry["user"], password=entry["password"], domain_id="default")
    for role in roles:
        identity.assign_project_role_to_user(project, user, role)
    for item in entry["catalog"]:
        service = identity.create_service(name=item["name"], type=item["type"])
        for interface in ("public", "internal"):
            identity.create_endpoint(service_id=service.id, interface=interface, url=item["url"], region_id=entry["region"])
print(json.dumps({"users": [e["user"] for e in spec]}))
"""


@dataclass
class Row:
    """One line of the report: a start or a check of a service."""

    service: str
    step: str
    result: str  # ok | failed | skipped
    seconds: float = 0.0
    detail: str = ""


@dataclass
class SmokeReport:
    release: str
    services: list[str]
    rows: list[Row] = field(default_factory=list)
    error: PipelineError | None = None  # the first start failure, else the first failed check
    logs: str | None = None  # where the containers' logs were kept
    seconds: float = 0.0
    client_versions: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_json(self) -> dict[str, Any]:
        return {"release": self.release, "ok": self.ok, "seconds": round(self.seconds, 1), "logs": self.logs,
                "client": self.client_versions, "error": str(self.error) if self.error else None,
                "rows": [{"service": r.service, "step": r.step, "result": r.result, "seconds": round(r.seconds, 2),
                          "detail": r.detail} for r in self.rows]}


def smoke(project: Project, release: str, services: list[str], jobs: int = 2, keep_going: bool = True) -> SmokeReport:
    rel = project.services(release, services)
    deployments = with_requirements(project, release, services or list(rel.services))
    names = [d.service for d in deployments]
    started = time.monotonic()
    built = build(project, release, names, jobs=jobs)
    if not built.outcome.ok:
        error = built.first_error()
        assert error is not None  # a build that is not ok has a failure
        raise error
    inputs = inputs_of(rel, names, built.outcome.results)
    client = connect(project.settings)
    constraints_text = project.layout.effective_constraints(release).read_text()
    plugins = ["python-openstackclient", *dict.fromkeys(p for d in deployments for p in d.client)]
    images = ensure_smoke_images(client, project, rel, inputs.bases, inputs.target, constraints_text, plugins)
    records = {d.service: image_record.load(project, release, d.service) for d in deployments}
    report = SmokeReport(release, names, client_versions=images.client_versions)
    plane = Plane(client, project.settings.image_prefix)
    console.note(f"smoke {release}: run {plane.run} (containers {plane.full_name('<name>')})")
    logs = project.layout.smoke_dir(release) / "logs"
    try:
        _run(project, release, deployments, records, images, plane, report)
    finally:
        if not report.ok or any(r.result != "ok" for r in report.rows):
            plane.save_logs(logs)
            report.logs = project.layout.rel(logs)
        with console.step(f"tear down the smoke's containers ({len(plane.containers)}), volumes and network"):
            plane.teardown()
    report.seconds = time.monotonic() - started
    if report.ok:
        remove(logs)
    write_junit(project.layout.smoke_junit(release), report)
    return report


def _run(project: Project, release: str, deployments: list[Deployment], records: dict[str, ImageRecord], images: SmokeImages,
         plane: Plane, report: SmokeReport) -> None:
    passwords = {name: _password() for name in ("admin", "rabbit", *(d.service for d in deployments))}
    values: dict[str, Any] = {
        "release": release, "region": REGION, "keystone_url": "http://keystone-api:5000",
        "transport_url": f"rabbit://openstack:{passwords['rabbit']}@rabbitmq:5672/",
        "memcached_servers": "memcached:11211", "rabbit_password": passwords["rabbit"],
        "database": {db: f"mysql+pymysql://{d.service}:{passwords[d.service]}@mariadb/{db}?charset=utf8"
                     for d in deployments for db in d.databases},
    }
    by_name = {d.service: d for d in deployments}

    def configs(deployment: Deployment) -> list[ConfigFile]:
        mine = {**values, "password": passwords[deployment.service]}
        return [ConfigFile(f"/etc/{deployment.service}/{name}",
                           render(deploy_file(project, release, deployment.service, name), mine).encode())
                for name in deployment.configs]

    def volumes(deployment: Deployment) -> dict[str, str]:
        """The deployment's volumes (engine name -> path in its containers)."""
        return {plane.full_name(f"{deployment.service}-{name}"): path for path, name in deployment.volumes.items()}

    def record(service: str, step: str, run: Callable[[], str]) -> None:
        """Run one start or check, time it, say so on stderr, and keep its row (a failure is kept and raised)."""
        begun = time.monotonic()
        try:
            detail = run()
        except CheckFailed as failed:
            seconds = time.monotonic() - begun
            report.rows.append(Row(service, step, "failed", seconds, redact(str(failed))))
            console.note(f"  {service}: {step}: FAILED ({seconds:.1f}s)")
            raise SmokeCheckError(f"smoke {release}: {service}: {step} failed:\n{redact(str(failed))}",
                                  hint="the containers' logs are kept under "
                                       f"{project.layout.rel(project.layout.smoke_dir(release) / 'logs')}") from None
        except PipelineError as error:
            seconds = time.monotonic() - begun
            report.rows.append(Row(service, step, "failed", seconds, error.message.splitlines()[0]))
            console.note(f"  {service}: {step}: FAILED ({seconds:.1f}s)")
            raise
        seconds = time.monotonic() - begun
        report.rows.append(Row(service, step, "ok", seconds, detail or ""))
        console.note(f"  {service}: {step}: ok ({seconds:.1f}s){f'  {detail}' if detail else ''}")

    # --- the control plane -------------------------------------------------------------------
    def network(_: dict[str, Any]) -> None:
        plane.create_network()

    def control(name: str) -> Callable[[dict[str, Any]], None]:
        def run(_: dict[str, Any]) -> None:
            files = []
            if name == "rabbitmq":
                files.append(ConfigFile("/etc/rabbitmq/rabbitmq.conf",
                                        render(deploy_file(project, release, "control-plane", "rabbitmq.conf"),
                                               values).encode(), 0o644, 0))
            record("control plane", CONTROL_PLANE[name], lambda: _start_control(plane, name, images.control_plane[name],
                                                                                 files))
            if name == "ovn":
                # By address: OVS's Python library resolves a host name only with the unbound library.
                address = plane.address("ovn")
                values.update(ovn_nb_connection=f"tcp:{address}:6641", ovn_sb_connection=f"tcp:{address}:6642")
        return run

    def client(_: dict[str, Any]) -> None:
        environment = {"OS_AUTH_URL": f"{values['keystone_url']}/v3", "OS_USERNAME": "admin",
                       "OS_PASSWORD": passwords["admin"], "OS_PROJECT_NAME": "admin", "OS_USER_DOMAIN_NAME": "Default",
                       "OS_PROJECT_DOMAIN_NAME": "Default", "OS_IDENTITY_API_VERSION": "3", "OS_REGION_NAME": REGION,
                       "OS_INTERFACE": "public"}
        plane.start(CLIENT, images.client, ["sleep", "infinity"], "the client (python-openstackclient)",
                    environment=environment)

    def databases(_: dict[str, Any]) -> None:
        statements = []
        for d in deployments:
            for db in d.databases:
                statements += [f"CREATE DATABASE `{db}`",
                               f"CREATE USER IF NOT EXISTS '{d.service}'@'%' IDENTIFIED BY '{passwords[d.service]}'",
                               f"GRANT ALL PRIVILEGES ON `{db}`.* TO '{d.service}'@'%'"]

        def run() -> str:
            code, out, err = plane.exec("mariadb", ["mariadb", "-e", ";\n".join(statements)], user="root")
            if code != 0:
                raise SmokeStartError(f"creating the databases failed: {redact(err or out).strip()[-400:]}")
            return f"{sum(len(d.databases) for d in deployments)} databases"
        record("control plane", "databases and users", run)

    # --- the services ------------------------------------------------------------------------
    def bootstrap(deployment: Deployment) -> Callable[[dict[str, Any]], None]:
        def run(_: dict[str, Any]) -> None:
            service = deployment.service
            for name in deployment.volumes.values():
                plane.volume(f"{service}-{name}")
            if not deployment.bootstrap:
                return
            where = f"{deploy_file(project, release, service, 'deploy.yaml')}: bootstrap"
            script = "\n".join(fill(command, {**values, "password": passwords[service]}, where, shlex.quote)
                               for command in deployment.bootstrap)
            record(service, "bootstrap", lambda: _bootstrap(plane, deployment, records[service].image_id, script,
                                                             configs(deployment), volumes(deployment),
                                                             {"ADMIN_PASSWORD": passwords["admin"]}))
        return run

    def register(_: dict[str, Any]) -> None:
        spec = [{"user": d.service, "password": passwords[d.service], "region": REGION,
                 "catalog": [c.__dict__ for c in d.catalog]} for d in deployments if d.service != "keystone"]

        def run() -> str:
            code, out, err = plane.exec(CLIENT, ["python", "-c", REGISTER_SCRIPT],
                                        environment={"SMOKE_REGISTER": json.dumps(spec)})
            if code != 0:
                raise SmokeStartError(f"registering the service users and the catalog failed:\n{redact(err or out)[-800:]}")
            return f"{len(spec)} service users, {sum(len(s['catalog']) for s in spec)} catalog entries"
        record("keystone", "service users and catalog", run)

    def start(deployment: Deployment) -> Callable[[dict[str, Any]], None]:
        def run(_: dict[str, Any]) -> None:
            service = deployment.service
            processes = _processes(records[service])
            for process, spec in processes.items():
                options = deployment.options(process)
                command = spec["command"]
                probe = http_probe(spec["port"]) if spec.get("port") else ["true"]
                plane.start(process, records[service].image_id, command, f"{process} ({service})",
                            files=configs(deployment), user=options.user, environment=dict(options.environment),
                            probe=probe, volumes=volumes(deployment), tmpfs=dict(options.tmpfs),
                            privileged=options.privileged)
            for process, spec in processes.items():
                if spec.get("port"):
                    record(service, f"{process} answers on :{spec['port']}", functools.partial(plane.answers, process, START_TIMEOUT))
            for process, spec in processes.items():
                if not spec.get("port"):
                    record(service, f"{process} runs", functools.partial(plane.settled, process))
        return run

    def check(deployment: Deployment) -> Callable[[dict[str, Any]], None]:
        def run(_: dict[str, Any]) -> None:
            service = deployment.service
            ctx = Context(plane, [d.service for d in deployments], facts)
            for process in _processes(records[service]):
                plane.running(process)
            pending = checks_of(service)
            if deployment.checks:
                runner = runner_for(service, deployment.folder, deployment.files,
                                    {**values, "password": passwords[service]})
                pending += runner.checks(deployment.checks)
            if records[service].patches:
                container = next(iter(_processes(records[service])))
                pending.append(_patched_check(service, ctx, container, records[service], project))
            for index, item in enumerate(pending):
                try:
                    record(service, item.name, functools.partial(item.run, ctx))
                except SmokeCheckError:
                    for later in pending[index + 1:]:
                        report.rows.append(Row(service, later.name, "skipped", 0.0, f"after {item.name} failed"))
                    raise
        return run

    facts: dict[str, Any] = {"catalog_types": ["identity", *(c.type for d in deployments for c in d.catalog)]}
    steps = [runner.Step("network", network),
             *[runner.Step(f"control:{name}", control(name), ("network",)) for name in CONTROL_PLANE],
             runner.Step("client", client, ("network",)),
             runner.Step("databases", databases, ("control:mariadb",))]
    for d in deployments:
        service = d.service
        needs = ["databases", "control:rabbitmq", "control:memcached", *(["control:ovn"] if service == "neutron" else [])]
        steps.append(runner.Step(f"bootstrap:{service}", bootstrap(d), tuple(needs)))
        after = [f"bootstrap:{service}", *(f"start:{r}" for r in d.requires)]
        if service != "keystone":
            after.append("register")
        steps.append(runner.Step(f"start:{service}", start(d), tuple(after)))
        steps.append(runner.Step(f"check:{service}", check(d),
                              (f"start:{service}", "register", *(f"check:{r}" for r in d.requires if r in by_name))))
    steps.append(runner.Step("register", register, ("start:keystone", "client")))
    outcome = runner.run(steps, jobs=max(4, len(deployments)), keep_going=True)
    for error in outcome.failures.values():
        if not isinstance(error, PipelineError):
            raise error
    starts = [e for e in outcome.failures.values() if isinstance(e, PipelineError) and not isinstance(e, SmokeCheckError)]
    checks = [e for e in outcome.failures.values() if isinstance(e, SmokeCheckError)]
    for name, cause in outcome.skipped.items():
        service = name.split(":", 1)[1] if ":" in name else name
        if name.startswith(("start:", "check:")) and service in by_name:
            report.rows.append(Row(service, name.split(":")[0], "skipped", 0.0, f"{cause} failed"))
    report.error = (starts or checks or [None])[0]


def _password() -> str:
    value = secrets.token_hex(16)
    register_secret(value)
    return value


def _processes(record: ImageRecord) -> dict[str, dict[str, Any]]:
    """The processes the image's labels name, with their command (what deployment tools read)."""
    labels = record.labels
    names = [n for n in labels.get(f"{LABEL_NS}.processes", "").split(",") if n]
    if not names:
        raise SmokeStartError(f"the image of {record.service} names no process (label {LABEL_NS}.processes)",
                              hint=f"declare its processes in releases/{record.release}/runtime.yaml and rebuild")
    return {name: json.loads(labels[f"{LABEL_NS}.process.{name}"]) for name in names}


def _start_control(plane: Plane, name: str, image: str, files: list[ConfigFile]) -> str:
    plane.start(name, image, None, CONTROL_PLANE[name], files=files)
    return f"{plane.wait_ready(name, START_TIMEOUT):.1f}s to be ready"


def _bootstrap(plane: Plane, deployment: Deployment, image: str, script: str, files: list[ConfigFile],
               volumes: dict[str, str], environment: dict[str, str]) -> str:
    name = f"{deployment.service}-bootstrap"
    plane.oneshot(name, image, ["sh", "-ec", script], f"the bootstrap of {deployment.service}", BOOTSTRAP_TIMEOUT,
                  files=files, user="root", volumes=volumes, environment=environment)
    return f"{len(deployment.bootstrap)} command(s)"


def _patched_check(service: str, ctx: Context, container: str, record: ImageRecord, project: Project) -> Check:
    return Check(service, "the running code is the patched code",
                 lambda c: patched_code(c, container, record, project.layout.workdir))


def write_junit(path: Path, report: SmokeReport) -> None:
    """One testsuite per service, one testcase per start and check."""
    suites = ET.Element("testsuites", name=f"smoke {report.release}")
    for service in dict.fromkeys(r.service for r in report.rows):
        suite = ET.SubElement(suites, "testsuite", name=f"smoke.{report.release}.{service}")
        rows = [r for r in report.rows if r.service == service]
        for row in rows:
            case = ET.SubElement(suite, "testcase", classname=f"smoke.{report.release}.{service}", name=row.step,
                                 time=f"{row.seconds:.3f}")
            if row.result == "failed":
                ET.SubElement(case, "failure", message=row.detail.splitlines()[0][:300] if row.detail else "failed"
                              ).text = row.detail
            elif row.result == "skipped":
                ET.SubElement(case, "skipped", message=row.detail)
        suite.set("tests", str(len(rows)))
        suite.set("failures", str(sum(r.result == "failed" for r in rows)))
        suite.set("skipped", str(sum(r.result == "skipped" for r in rows)))
        suite.set("time", f"{sum(r.seconds for r in rows):.3f}")
    ET.indent(suites)
    write_atomic(path, ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n")
