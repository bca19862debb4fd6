"""deploy/compose: a valid Compose file whose containers run what the federation runner runs,
on the files ``xweg federation prepare --network compose`` makes.

No container runs here.  The file is checked against the Compose Specification's JSON
schema, and then against the code: federation-init's own command prepares a federation
into a folder that stands for the containers' file system (``/var/lib/xweg/owl`` is
``ROOT/var/lib/xweg/owl``), and the real loaders read what it wrote.  The one change to
that command: the registry's store is a SQLite file instead of the PostgreSQL service,
which is not there; what the compose file says about PostgreSQL is checked on its own.
"""

from __future__ import annotations

import copy
import http.server
import importlib.resources
import ipaddress
import json
import re
import socket
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from sqlalchemy.engine import make_url

import gateway.server
from core.clock import SystemClock
from gateway.config import GatewayConfig, Limits
from gateway.internaltls import load_or_create_internal_tls
from gateway.management.openapi import openapi_document
from registry.server import RegistrySettings, make_app
from registry.store import RegistryStore
from trust.keys import load_certificate
from trust.service.ocsp_responder import OcspResponderSettings
from trust.service.tsa import TsaSettings, make_tsa_app
from xweg.cli import _parser, main
from xweg.federation import (
    Layout,
    Network,
    component_commands,
    compose_service,
    open_layout,
)

REPO = Path(__file__).resolve().parents[3]
COMPOSE_DIR = REPO / "deploy" / "compose"
COMPOSE_FILE = COMPOSE_DIR / "compose.yaml"
#: The image's data volume (Dockerfile: VOLUME, the only place besides /tmp it writes).
IMAGE_VOLUME = "/var/lib/xweg"
IMAGE_USER = "10001:10001"
ONE_SHOTS = ("federation-init", "federation-enrol")
#: Where Prometheus listens in its container (its image's default --web.listen-address).
PROMETHEUS_PORT = 9090

Service = dict[str, Any]


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return loaded


def services() -> dict[str, Service]:
    found: dict[str, Service] = compose()["services"]
    return found


def xweg_services() -> dict[str, Service]:
    """The services that run the xweg image."""
    return {name: s for name, s in services().items() if s["image"] == "xweg"}


def command(name: str) -> list[str]:
    args = services()[name]["command"]
    assert isinstance(args, list) and all(isinstance(a, str) for a in args), f"{name}: a list of strings"
    return list(args)


def option(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def depends_on(name: str) -> dict[str, str]:
    """The services ``name`` waits for, and the condition of each."""
    found = services()[name].get("depends_on", {})
    assert isinstance(found, dict), f"{name}: depends_on in the long form, with conditions"
    return {target: entry["condition"] for target, entry in found.items()}


def waits_for(name: str) -> set[str]:
    """Every service ``name`` waits for, directly or through others."""
    seen: set[str] = set()
    pending = [name]
    while pending:
        for target in depends_on(pending.pop()):
            if target not in seen:
                seen.add(target)
                pending.append(target)
    return seen


def mounts(service: Service) -> list[dict[str, Any]]:
    """The service's volumes in the long form: type, source, target, read_only, volume."""
    found = []
    for entry in service.get("volumes", []):
        if isinstance(entry, dict):
            found.append(entry)
            continue
        source, target, *mode = entry.split(":")
        kind = "bind" if source.startswith((".", "/")) else "volume"
        found.append({"type": kind, "source": source, "target": target, "read_only": mode == ["ro"]})
    return found


def mount_at(service: Service, target: str) -> dict[str, Any]:
    (found,) = [m for m in mounts(service) if m["target"] == target]
    return found


def healthcheck(name: str) -> list[str]:
    test = services()[name]["healthcheck"]["test"]
    assert test[0] == "CMD", f"{name}: the check runs a program, no shell (the images need none)"
    return list(test[1:])


HTTP_CHECK = re.compile(
    r"import urllib\.request; urllib\.request\.urlopen\('http://127\.0\.0\.1:(\d+)(/\w+)', timeout=5\)"
)
TCP_CHECK = re.compile(
    r"import socket; socket\.create_connection\(\('127\.0\.0\.1', (\d+)\), timeout=5\)\.close\(\)"
)


def python_check(name: str) -> tuple[int, str | None]:
    """An xweg container's check: (port, path) of its HTTP GET, or (port, None) for a connection."""
    program, flag, code = healthcheck(name)
    assert (program, flag) == ("python", "-c"), f"{name}: the image has python, not curl"
    compile(code, name, "exec")
    http = HTTP_CHECK.fullmatch(code)
    if http:
        return int(http.group(1)), http.group(2)
    tcp = TCP_CHECK.fullmatch(code)
    assert tcp, f"{name}: an unknown check {code!r}"
    return int(tcp.group(1)), None


def get_routes(app: Any) -> set[str]:
    return {r.resource.canonical for r in app.router.routes() if r.method == "GET" and r.resource}


# -- the prepared federation ------------------------------------------------------------------


@dataclass(frozen=True)
class Prepared:
    root: Path  # stands for "/" of the containers
    layout: Layout
    registry_store: str  # the registry's store in place of PostgreSQL

    def outside(self, path: str) -> Path:
        """Where a path of a container is here."""
        assert path.startswith("/"), path
        return self.root / path.lstrip("/")

    def inside(self, path: Path | str) -> str:
        """The container's path of a file here."""
        return "/" + str(Path(path).relative_to(self.root))


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Prepared:
    root = tmp_path_factory.mktemp("containers")
    args = command("federation-init")
    data = option(args, "--data")
    store = f"sqlite:///{root / 'registry-store.db'}"
    args[args.index("--registry-database-url") + 1] = store
    args[args.index("--data") + 1] = str(root / data.lstrip("/"))
    assert main(args) == 0
    return Prepared(root, open_layout(root / data.lstrip("/")), store)


def config_of(prepared: Prepared, name: str) -> Path:
    return prepared.outside(option(command(name), "--config"))


def gateway_config(prepared: Prepared, slug: str) -> GatewayConfig:
    return GatewayConfig.load(config_of(prepared, compose_service(slug)), environ={})


def registry_settings(prepared: Prepared) -> RegistrySettings:
    return RegistrySettings.load(config_of(prepared, "registry"), environ={})


# -- a valid Compose file -----------------------------------------------------------------------


def compose_schema() -> dict[str, Any] | None:
    """The Compose Specification's JSON schema, as check-jsonschema ships it (the test extra)."""
    try:
        vendor = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    except ModuleNotFoundError:
        return None
    schema: dict[str, Any] = json.loads((vendor / "compose-spec.json").read_text(encoding="utf-8"))
    return schema


def schema_errors(document: dict[str, Any]) -> list[str]:
    import jsonschema

    schema = compose_schema()
    assert schema is not None
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]


NO_SCHEMA = (
    "needs check-jsonschema, which ships the Compose Specification's JSON schema "
    "(compose-spec.json): pip install -e '.[test]'"
)


@pytest.mark.skipif(compose_schema() is None, reason=NO_SCHEMA)
def test_the_file_is_valid_by_the_compose_specification() -> None:
    schema = compose_schema()
    assert schema is not None and schema["title"] == "Compose Specification"
    assert schema_errors(compose()) == []


@pytest.mark.skipif(compose_schema() is None, reason=NO_SCHEMA)
def test_the_schema_refuses_a_misspelt_key() -> None:
    # The check above is only worth something if an unknown key fails it.
    broken = copy.deepcopy(compose())
    broken["services"]["registry"]["readonly"] = True
    assert schema_errors(broken)


def test_every_service_runs_a_command_xweg_has() -> None:
    for name, service in xweg_services().items():
        assert "entrypoint" not in service, f"{name}: the image's ENTRYPOINT is xweg"
        _parser().parse_args(command(name))


def test_the_services_are_the_federations_components(prepared: Prepared) -> None:
    components = {compose_service(c) for c in component_commands(prepared.layout)}
    assert set(services()) == components | {*ONE_SHOTS, "postgres", "prometheus", "grafana"}
    assert set(xweg_services()) == components | set(ONE_SHOTS)


def test_each_container_runs_what_the_federation_runner_runs(prepared: Prepared) -> None:
    # The runner's command, its paths in the containers: xweg demo runs the same.
    for component, args in component_commands(prepared.layout).items():
        expected = [prepared.inside(a) if a.startswith(str(prepared.root)) else a for a in args]
        assert command(compose_service(component)) == expected, component


def test_the_one_shots_prepare_then_enrol_the_same_folder() -> None:
    init = _parser().parse_args(command("federation-init"))
    enrol = _parser().parse_args(command("federation-enrol"))
    assert (init.command, init.action, enrol.command, enrol.action) == (
        "federation",
        "prepare",
        "federation",
        "enrol",
    )
    assert init.network == Network.COMPOSE.value
    assert enrol.data == init.data
    assert str(init.data).startswith(IMAGE_VOLUME + "/")
    for name in ONE_SHOTS:
        assert "restart" not in services()[name], f"{name} runs once"


def test_xweg_containers_run_as_the_images_user_on_a_read_only_root() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    assert f"USER {IMAGE_USER}" in dockerfile.splitlines()
    assert f'VOLUME ["{IMAGE_VOLUME}"]' in dockerfile.splitlines()
    for name, service in xweg_services().items():
        assert service["user"] == IMAGE_USER, name
        assert service["read_only"] is True, name
        assert service["tmpfs"] == ["/tmp"], name
        assert service["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"], name
        assert service["pull_policy"] == "never", f"{name}: the image is built here, not pulled"


def test_the_federations_files_are_in_the_volume(prepared: Prepared) -> None:
    data = option(command("federation-init"), "--data")
    for name, service in xweg_services().items():
        args = command(name)
        named = [a for a in args if a.startswith("/")]
        if not named:
            assert "volumes" not in service, f"{name} needs no files and gets none"
            continue
        assert mount_at(service, IMAGE_VOLUME) == {
            "type": "volume",
            "source": "federation",
            "target": IMAGE_VOLUME,
            "read_only": False,
        }
        for path in named:
            assert path.startswith(data + "/") or path == data, f"{name}: {path} is outside the federation"
    # Every absolute path the configuration files name is in the volume too.
    for config in prepared.layout.root.rglob("*.toml"):
        for path in re.findall(r'"(/[^"]*)"', config.read_text()):
            assert prepared.inside(path).startswith(data + "/"), f"{config.name}: {path}"
    assert "federation" in compose()["volumes"]


# -- the files prepared for the compose network, read by the real loaders -------------------------


def test_the_registry_listens_where_the_anchor_points(prepared: Prepared) -> None:
    layout, settings = prepared.layout, registry_settings(prepared)
    assert settings.host == "0.0.0.0"
    anchor = json.loads(layout.anchor.read_text())
    assert anchor["registry_urls"] == [f"http://registry:{settings.port}"]
    assert layout.registry_url == f"http://registry:{settings.port}"
    # What the federation-init command asked for (here: in place of PostgreSQL).
    assert settings.database_url == prepared.registry_store
    assert settings.state_dir.is_relative_to(layout.root)


def test_the_registry_publishes_the_trust_services_by_service_name(prepared: Prepared) -> None:
    ocsp = OcspResponderSettings.load(config_of(prepared, "ocsp"), environ={})
    tsa = TsaSettings.load(config_of(prepared, "tsa"), environ={})
    assert ocsp.host == tsa.host == "0.0.0.0"
    with RegistryStore.open(prepared.registry_store) as store:
        (ca,) = store.approved_cas()
        (authority,) = store.approved_tsas()
    assert ca.ocsp_url == f"http://ocsp:{ocsp.port}/"
    assert authority.url == f"http://tsa:{tsa.port}/"


def test_the_registrys_store_is_the_postgres_service() -> None:
    postgres = services()["postgres"]
    url = make_url(option(command("federation-init"), "--registry-database-url"))
    assert url.get_backend_name() == "postgresql"
    assert url.host == "postgres" and url.port in (None, 5432)
    assert url.username == postgres["environment"]["POSTGRES_USER"]
    assert url.database == postgres["environment"]["POSTGRES_DB"]
    assert url.password is None, "the password comes from PGPASSWORD, not the URL"
    # Whatever opens the store has the password, from the same variable as the server's.
    password = postgres["environment"]["POSTGRES_PASSWORD"]
    for name in ("federation-init", "registry", "federation-enrol"):
        assert services()[name]["environment"]["PGPASSWORD"] == password, name
    assert "postgres" in waits_for("registry") and "postgres" in waits_for("federation-init")


def test_no_secret_is_in_the_file() -> None:
    secrets = {
        "POSTGRES_PASSWORD": services()["postgres"]["environment"]["POSTGRES_PASSWORD"],
        "GF_SECURITY_ADMIN_PASSWORD": services()["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"],
    }
    for name, value in secrets.items():
        # ${VARIABLE:?message}: compose refuses to start without it.
        assert re.fullmatch(r"\$\{XWEG_[A-Z_]+:\?[^}]+\}", value), f"{name} must come from the environment"
    ignored = (REPO / ".gitignore").read_text().splitlines()
    assert "/deploy/compose/.env" in ignored, "the .env file that holds them stays out of git"


def test_the_security_servers_listen_where_the_others_look(prepared: Prepared) -> None:
    layout = prepared.layout
    backends = {
        compose_service(c): int(option(command(compose_service(c)), "--port"))
        for c in component_commands(layout)
        if c.startswith("backend.")
    }
    for server in layout.plan.servers:
        config = gateway_config(prepared, server.slug)
        assert config.management_listener is not None
        listeners = (config.client_listener, config.peer_listener, config.management_listener)
        assert all(listener.host == "0.0.0.0" for listener in listeners)
        for listener, name in zip(listeners, ("client", "peer", "management"), strict=True):
            assert layout.address(f"{server.slug}.{name}") == f"ss-{server.slug}:{listener.port}"
        assert config.anchor_path == layout.anchor
        assert config.key_passphrase == layout.passphrase_file.read_bytes().strip()
        # Each service's backend is the demo backend's container, at the port it listens on.
        for service in config.services:
            url = urllib.parse.urlsplit(service.base_url)
            assert url.hostname in backends and url.port == backends[url.hostname], service.base_url
            assert url.hostname in waits_for(compose_service(server.slug))


def test_every_listener_port_has_a_compose_service_name(prepared: Prepared) -> None:
    # Listeners reached by name: each name is a service of the file.
    for listener in prepared.layout.ports:
        assert compose_service(listener) in services(), listener


# -- health, order, ports ---------------------------------------------------------------------------


def test_every_healthcheck_asks_a_port_the_service_listens_on(prepared: Prepared) -> None:
    layout = prepared.layout
    registry = registry_settings(prepared)
    tsa = TsaSettings.load(config_of(prepared, "tsa"), environ={})
    ocsp = OcspResponderSettings.load(config_of(prepared, "ocsp"), environ={})
    expected: dict[str, tuple[int, str | None]] = {
        "registry": (registry.port, "/healthz"),
        "tsa": (tsa.port, "/healthz"),
        "ocsp": (ocsp.port, None),  # it serves OCSP requests only
    }
    assert "/healthz" in get_routes(make_app(registry, SystemClock()))
    assert "/healthz" in get_routes(make_tsa_app(tsa, SystemClock()))
    for component in component_commands(layout):
        if component.startswith("backend."):
            expected[compose_service(component)] = (
                int(option(command(compose_service(component)), "--port")),
                None,
            )
    for server in layout.plan.servers:
        config = gateway_config(prepared, server.slug)
        assert "/readyz" in gateway.server._PROBES
        expected[compose_service(server.slug)] = (config.client_listener.port, "/readyz")
    checked = {name for name in xweg_services() if "healthcheck" in services()[name]}
    assert checked == set(expected), "every long-running xweg container has a check"
    for name, (port, path) in expected.items():
        assert python_check(name) == (port, path), name


def test_postgres_is_healthy_once_it_takes_connections() -> None:
    check = healthcheck("postgres")
    environment = services()["postgres"]["environment"]
    assert check[0] == "pg_isready"
    # Over TCP: while the image initialises a new database it listens on its socket only.
    assert option(check, "--host") == "127.0.0.1"
    assert option(check, "--username") == environment["POSTGRES_USER"]
    assert option(check, "--dbname") == environment["POSTGRES_DB"]
    assert mount_at(services()["postgres"], "/var/lib/postgresql/data")["source"] == "postgres-data"


class _Probe(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:  # noqa: N802 -- the base class's name
        self.send_response(type(self).status)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 -- the base class's name
        pass


@pytest.fixture
def probe() -> Iterator[tuple[int, type[_Probe]]]:
    handler = type("Probe", (_Probe,), {})
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], handler
    finally:
        server.shutdown()
        server.server_close()


def _run_check(code: str, port: int) -> int:
    code = re.sub(r"127\.0\.0\.1(['\"]?)(:|, )\d+", rf"127.0.0.1\g<1>\g<2>{port}", code)
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, check=False, timeout=30
    ).returncode


def test_the_checks_fail_when_the_answer_is_not_ok(probe: tuple[int, type[_Probe]]) -> None:
    port, handler = probe
    http_check = healthcheck("ss-paderborn")[2]
    tcp_check = healthcheck("ocsp")[2]
    assert _run_check(http_check, port) == 0
    handler.status = 503  # /readyz of a server without current global configuration
    assert _run_check(http_check, port) != 0
    assert _run_check(tcp_check, port) == 0
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        unused = closed.getsockname()[1]
    assert _run_check(tcp_check, unused) != 0
    assert _run_check(http_check, unused) != 0


def test_services_start_in_the_federations_order(prepared: Prepared) -> None:
    for name in services():
        for target, condition in depends_on(name).items():
            assert condition in ("service_healthy", "service_completed_successfully"), (name, target)
            if condition == "service_healthy":
                assert "healthcheck" in services()[target], f"{name} waits for {target}, which has no check"
            else:
                assert target in ONE_SHOTS, f"{name} waits for {target} to finish, but it runs on"
    assert depends_on("federation-init") == {"postgres": "service_healthy"}
    assert depends_on("federation-enrol") == dict.fromkeys(("registry", "ocsp", "tsa"), "service_healthy")
    for name in xweg_services():
        if name != "federation-init" and "volumes" in services()[name]:
            assert depends_on(name).get("federation-init") == "service_completed_successfully" or (
                "federation-init" in waits_for(name)
            ), f"{name} starts before its files exist"
    # Security servers start once registered; a provider once its backends answer.
    for server in prepared.layout.plan.servers:
        name = compose_service(server.slug)
        assert depends_on(name)["federation-enrol"] == "service_completed_successfully"
        for service in server.services:
            backend = compose_service("backend." + service.backend)
            assert depends_on(name).get(backend) == "service_healthy", (name, backend)


def test_the_servers_may_finish_exchanges_in_flight_before_they_are_killed(prepared: Prepared) -> None:
    for server in prepared.layout.plan.servers:
        grace = services()[compose_service(server.slug)]["stop_grace_period"]
        match = re.fullmatch(r"(\d+)s", grace)
        assert match and int(match.group(1)) > Limits().shutdown_timeout_s + 10, server.slug


def test_only_one_client_listener_and_grafana_are_on_the_host(prepared: Prepared) -> None:
    published = {name: s["ports"] for name, s in services().items() if "ports" in s}
    paderborn = gateway_config(prepared, "paderborn").client_listener.port
    assert published == {
        "ss-paderborn": [f"127.0.0.1:{paderborn}:{paderborn}"],
        "grafana": ["127.0.0.1:3000:3000"],
    }
    for service in services().values():
        assert "network_mode" not in service and "expose" not in service


# -- Prometheus and Grafana ---------------------------------------------------------------------------


def prometheus_config() -> dict[str, Any]:
    service = services()["prometheus"]
    flags = dict(f.removeprefix("--").split("=", 1) for f in service["command"])
    mount = mount_at(service, flags["config.file"])
    assert mount["type"] == "bind" and mount["read_only"] is True
    loaded: dict[str, Any] = yaml.safe_load((COMPOSE_DIR / mount["source"]).read_text())
    return loaded


def test_prometheus_scrapes_every_security_server_and_nothing_else(prepared: Prepared) -> None:
    layout = prepared.layout
    jobs = {job["job_name"]: job for job in prometheus_config()["scrape_configs"]}
    assert set(jobs) == {f"xweg-{compose_service(s.slug)}" for s in layout.plan.servers}
    # /metrics is on the management listener; the registry and the trust services have none.
    assert "/metrics" in openapi_document()["paths"]
    assert "/metrics" not in get_routes(make_app(registry_settings(prepared), SystemClock()))
    prometheus = services()["prometheus"]
    for server in layout.plan.servers:
        job = jobs[f"xweg-{compose_service(server.slug)}"]
        config = gateway_config(prepared, server.slug)
        assert config.management_listener is not None
        (static,) = job["static_configs"]
        (target,) = static["targets"]
        assert target == layout.address(f"{server.slug}.management")
        assert target == f"{compose_service(server.slug)}:{config.management_listener.port}"
        assert static["labels"]["security_server"] == server.id.slash()
        assert (job["scheme"], job["metrics_path"]) == ("https", "/metrics")
        assert "insecure_skip_verify" not in job["tls_config"]
        assert compose_service(server.slug) in depends_on("prometheus")

        # Its CA file is the server's internal TLS certificate, lent through monitoring/ only.
        ca_file = job["tls_config"]["ca_file"]
        folder, _, name = ca_file.rpartition("/")
        mount = mount_at(prometheus, folder)
        assert (mount["source"], mount["read_only"]) == ("federation", True)
        data = option(command("federation-init"), "--data")
        lent = prepared.outside(IMAGE_VOLUME) / mount["volume"]["subpath"] / name
        assert lent == layout.monitoring_certificate(server.slug)
        assert prepared.inside(lent).startswith(data + "/monitoring/")
        assert sorted(p.name for p in lent.parent.iterdir()) == sorted(
            f"{s.slug}.pem" for s in layout.plan.servers
        ), "monitoring/ holds the certificates and nothing else"
        assert lent.read_bytes() == layout.internal_tls_certificate(server.slug).read_bytes()

        # The certificate names the target, and the server takes it as its own at start.
        certificate = load_certificate(lent)
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert compose_service(server.slug) in names.get_values_for_type(x509.DNSName)
        assert ipaddress.ip_address("127.0.0.1") in names.get_values_for_type(x509.IPAddress)
        used, _ = load_or_create_internal_tls(config.data_dir, config.key_passphrase)
        assert load_certificate(used) == certificate


def test_grafana_provisions_the_dashboard_and_prometheus() -> None:
    grafana = services()["grafana"]
    provisioning = mount_at(grafana, "/etc/grafana/provisioning")
    assert provisioning["read_only"] is True
    folder = COMPOSE_DIR / provisioning["source"]

    (datasource,) = yaml.safe_load((folder / "datasources" / "prometheus.yaml").read_text())["datasources"]
    assert datasource["type"] == "prometheus" and datasource["isDefault"] is True
    assert datasource["url"] == f"http://prometheus:{PROMETHEUS_PORT}"
    assert f"127.0.0.1:{PROMETHEUS_PORT}/" in " ".join(healthcheck("prometheus"))

    (provider,) = yaml.safe_load((folder / "dashboards" / "xweg.yaml").read_text())["providers"]
    assert provider["type"] == "file"
    dashboards = [m for m in mounts(grafana) if m["target"].startswith(provider["options"]["path"] + "/")]
    assert [m["target"] for m in dashboards] == [f"{provider['options']['path']}/xweg-dashboard.json"]
    (dashboard,) = dashboards
    assert dashboard["read_only"] is True
    source = (COMPOSE_DIR / dashboard["source"]).resolve()
    assert source == REPO / "deploy" / "grafana" / "xweg-dashboard.json"
    document = json.loads(source.read_text())
    # The dashboard asks for a data source of the type provisioned.
    (variable,) = [v for v in document["templating"]["list"] if v["type"] == "datasource"]
    assert variable["query"] == datasource["type"]
    assert grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"] == dashboard["target"]
