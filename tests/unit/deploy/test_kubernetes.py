"""The Kubernetes manifests in deploy/kubernetes: valid objects for the Kubernetes version
stated here, and consistent with the configuration they carry and the code that reads it."""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import ValidationError

from gateway.config import GatewayConfig
from gateway.database import is_postgres_url
from gateway.messagelog.store import PostgresLogShard
from registry.server import RegistrySettings
from xweg.cli import _parser

MANIFESTS = Path(__file__).resolve().parents[3] / "deploy" / "kubernetes"
#: The oldest Kubernetes the manifests are written for: StatefulSet's
#: persistentVolumeClaimRetentionPolicy is GA from 1.32.
KUBERNETES_VERSION = "1.32.0"
NAMESPACE = "xweg"
EXAMPLE_SECRETS = "secrets.example.yaml"
#: What one security server keeps resident in steady state.
GATEWAY_RSS_BYTES = 120 * 1024 * 1024

Object = dict[str, Any]


def documents() -> list[tuple[str, int, Object]]:
    """Every Kubernetes object in the folder: (file name, index in the file, object)."""
    found = []
    for path in sorted(MANIFESTS.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for index, document in enumerate(yaml.safe_load_all(path.read_text())):
            if document is not None:
                found.append((path.name, index, document))
    return found


def kustomization() -> Object:
    loaded: Object = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    return loaded


def one(kind: str, name: str) -> Object:
    (found,) = [d for _, _, d in documents() if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def example_secret(name: str) -> Object:
    (found,) = [
        d
        for file, _, d in documents()
        if file == EXAMPLE_SECRETS and d["kind"] == "Secret" and d["metadata"]["name"] == name
    ]
    return found


def gateway() -> Object:
    return one("StatefulSet", "xweg-gateway")


def registry() -> Object:
    return one("Deployment", "xweg-registry")


def container(workload: Object) -> Object:
    (only,) = workload["spec"]["template"]["spec"]["containers"]
    return only


def port_number(workload: Object, port: int | str) -> int:
    """A port as a probe or Service names it (a number, or the name of a container port)."""
    if isinstance(port, int):
        return port
    (number,) = [p["containerPort"] for p in container(workload)["ports"] if p["name"] == port]
    return int(number)


def pod_files(workload: Object, root: Path) -> None:
    """Lay out under ``root`` what the pod sees at its mount paths: each ConfigMap's and
    (example) Secret's keys as files, the other volumes as empty directories."""
    spec = workload["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    claims = {t["metadata"]["name"] for t in workload["spec"].get("volumeClaimTemplates", [])}
    for mount in container(workload)["volumeMounts"]:
        target = root / mount["mountPath"].lstrip("/")
        target.mkdir(parents=True)
        volume = volumes.get(mount["name"])
        if volume is None:
            assert mount["name"] in claims, f"volume {mount['name']} is neither declared nor claimed"
            continue
        if "configMap" in volume:
            data = one("ConfigMap", volume["configMap"]["name"])["data"]
        elif "secret" in volume:
            data = example_secret(volume["secret"]["secretName"])["stringData"]
        else:
            continue
        for key, value in data.items():
            (target / key).write_text(value)


def config_in_pod(workload: Object, root: Path) -> Path:
    """The configuration file the container is started with, its absolute paths moved under
    ``root`` (where :func:`pod_files` laid out the mounts), ready for the real loader."""
    args = _parser().parse_args(container(workload)["args"])
    inside = root / str(args.config).lstrip("/")
    moved = inside.read_text().replace('"/', f'"{root}/')
    loadable = inside.with_name("loadable-" + inside.name)
    loadable.write_text(moved)
    return loadable


def pod_environ(workload: Object, ordinal: int = 0) -> dict[str, str]:
    """The container's environment variables as its pod number ``ordinal`` sees them:
    literal values, and the pod's name (a StatefulSet's pods are NAME-0, NAME-1, ...)."""
    pod_name = f"{workload['metadata']['name']}-{ordinal}"
    environ = {}
    for env in container(workload).get("env", []):
        if "value" in env:
            environ[env["name"]] = env["value"]
        elif env.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name":
            environ[env["name"]] = pod_name
    return environ


def server_toml(workload: Object) -> Object:
    """The container's configuration file as TOML, before any loader has read it."""
    args = _parser().parse_args(container(workload)["args"])
    volumes = {v["name"]: v for v in workload["spec"]["template"]["spec"]["volumes"]}
    mount = mount_for(workload, str(args.config))
    data = one("ConfigMap", volumes[mount["name"]]["configMap"]["name"])["data"]
    loaded: Object = tomllib.loads(data[Path(str(args.config)).name])
    return loaded


def mount_for(workload: Object, path: str) -> Object:
    """The volume mount a path inside the container lies on (the longest matching mount path)."""
    mounts = [
        m
        for m in container(workload)["volumeMounts"]
        if path == m["mountPath"] or path.startswith(m["mountPath"].rstrip("/") + "/")
    ]
    assert mounts, f"{path} is on no volume"
    return max(mounts, key=lambda m: len(m["mountPath"]))


def memory_bytes(quantity: str) -> int:
    match = re.fullmatch(r"(\d+)(Ki|Mi|Gi)?", quantity)
    assert match, quantity
    return int(match.group(1)) * {None: 1, "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3}[match.group(2)]


# -- valid objects ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "document", documents(), ids=lambda d: f"{d[0]}:{d[2]['kind']}/{d[2]['metadata']['name']}"
)
def test_every_manifest_is_a_valid_object(document: tuple[str, int, Object]) -> None:
    _, _, obj = document
    kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_strict_validation_refuses_a_misspelt_field() -> None:
    # The check above is only worth something if an unknown field fails it.
    broken = copy.deepcopy(gateway())
    container(broken)["securityContext"]["readOnlyRootFileSystem"] = True
    with pytest.raises(ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_the_kustomization_lists_every_manifest_but_the_example_secrets() -> None:
    listed = kustomization()["resources"]
    on_disk = {p.name for p in MANIFESTS.glob("*.yaml")} - {"kustomization.yaml", EXAMPLE_SECRETS}
    assert sorted(listed) == sorted(on_disk)
    assert kustomization()["namespace"] == NAMESPACE
    # No key material in the base: the Secrets are made by the operator.
    for file, _, obj in documents():
        assert obj["kind"] != "Secret" or file == EXAMPLE_SECRETS
    assert "secretGenerator" not in kustomization()


def test_the_example_secrets_hold_placeholders_only() -> None:
    secrets = [d for file, _, d in documents() if file == EXAMPLE_SECRETS]
    assert secrets
    for secret in secrets:
        assert "data" not in secret, "base64 data would hide what is in it"
        for key, value in secret["stringData"].items():
            assert "REPLACE-ME" in value, f"{secret['metadata']['name']}/{key} is not a placeholder"
            assert "-----BEGIN" not in value, f"{secret['metadata']['name']}/{key} holds PEM"


def _kubectl() -> str | None:
    return shutil.which("kubectl")


@pytest.mark.skipif(_kubectl() is None, reason="needs kubectl (its built-in kustomize renders offline)")
def test_kustomize_renders_the_base_into_valid_objects_in_one_namespace() -> None:
    program = _kubectl()
    assert program is not None
    done = subprocess.run(
        [program, "kustomize", str(MANIFESTS)], capture_output=True, text=True, check=False, timeout=60
    )
    assert done.returncode == 0, done.stderr
    rendered = [d for d in yaml.safe_load_all(done.stdout) if d is not None]
    for obj in rendered:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == NAMESPACE, obj["metadata"]["name"]
    expected = {
        (d["kind"], d["metadata"]["name"])
        for file in kustomization()["resources"]
        for d in yaml.safe_load_all((MANIFESTS / file).read_text())
    }
    assert {(d["kind"], d["metadata"]["name"]) for d in rendered} == expected
    (tag,) = kustomization()["images"]
    images = {
        c["image"]
        for d in rendered
        if d["kind"] in ("Deployment", "StatefulSet")
        for c in d["spec"]["template"]["spec"]["containers"]
    }
    assert images == {f"{tag['name']}:{tag['newTag']}"}


# -- the configuration files, read by the real loaders -----------------------------------------


def test_the_security_servers_configmap_loads_with_the_mounted_files(tmp_path: Path) -> None:
    workload = gateway()
    pod_files(workload, tmp_path)
    environ = pod_environ(workload, 0)
    assert environ["POD_NAME"] == "xweg-gateway-0"
    config = GatewayConfig.load(config_in_pod(workload, tmp_path), environ=environ)

    # Every file the configuration names is provided by a mounted ConfigMap or Secret.
    named = [config.anchor_path, config.auth_key_path, config.auth_certificate_path]
    named += [p for s in config.sign_keys for p in (s.key_path, s.certificate_path)]
    for path in named:
        assert path.is_file(), f"{path.relative_to(tmp_path)} is in no mounted volume"
        assert mount_for(workload, "/" + str(path.relative_to(tmp_path)))["readOnly"] is True
    assert config.key_passphrase == example_secret("xweg-gateway-passphrase")["stringData"][
        "passphrase"
    ].encode().rstrip(b"\n")
    assert config.server_id.owner in {s.member for s in config.sign_keys}

    # Everything the server writes goes to the data volume, which is its claim.
    data_dir = "/" + str(config.data_dir.relative_to(tmp_path))
    data_mount = mount_for(workload, data_dir)
    assert data_mount["mountPath"] == data_dir and not data_mount.get("readOnly", False)
    (claim,) = workload["spec"]["volumeClaimTemplates"]
    assert data_mount["name"] == claim["metadata"]["name"]

    # The message log is this pod's shard of the shared PostgreSQL database, which also
    # holds the server configuration store.
    assert config.messagelog.shard == "xweg_gateway_0"
    assert isinstance(config.message_log, PostgresLogShard)
    assert config.message_log.url == config.database_url
    assert config.message_log.schema == "messagelog_xweg_gateway_0"
    assert config.serverconf.database_url == config.database_url

    # Other pods reach the listeners only on the pod's own addresses.
    listeners = [config.client_listener, config.peer_listener, config.management_listener]
    for listener in listeners:
        assert listener is not None and listener.host in ("0.0.0.0", "::")


def test_the_registrys_configmap_loads_with_the_mounted_files(tmp_path: Path) -> None:
    workload = registry()
    pod_files(workload, tmp_path)
    settings = RegistrySettings.load(config_in_pod(workload, tmp_path), environ={})

    for path in (settings.signing_key_path, *(p for p, _ in settings.more_signing_keys)):
        assert path.is_file(), f"{path.relative_to(tmp_path)} is in no mounted volume"
    signing = example_secret("xweg-registry-signing")["stringData"]
    assert settings.key_passphrase == signing["passphrase"].encode()

    state_dir = "/" + str(settings.state_dir.relative_to(tmp_path))
    state_mount = mount_for(workload, state_dir)
    assert not state_mount.get("readOnly", False)
    volumes = {v["name"]: v for v in workload["spec"]["template"]["spec"]["volumes"]}
    claim = volumes[state_mount["name"]]["persistentVolumeClaim"]["claimName"]
    assert one("PersistentVolumeClaim", claim)
    assert settings.host in ("0.0.0.0", "::")

    # The database is PostgreSQL, and where it is and the password come from a Secret:
    # the URL names a libpq service, defined in the service file PGSERVICEFILE points at.
    assert settings.database_url is not None
    match = re.fullmatch(r"postgresql\+psycopg:///\?service=([\w-]+)", settings.database_url)
    assert match, settings.database_url
    env = {e["name"]: e for e in container(workload)["env"]}
    service_file = env["PGSERVICEFILE"]["value"]
    assert (tmp_path / service_file.lstrip("/")).is_file()
    assert mount_for(workload, service_file)["readOnly"] is True
    service_conf = (tmp_path / service_file.lstrip("/")).read_text()
    assert f"[{match.group(1)}]" in service_conf.splitlines()
    assert re.search(r"^password=", service_conf, re.MULTILINE)


def test_the_security_server_finds_its_database_in_a_service_file_from_a_secret(tmp_path: Path) -> None:
    workload = gateway()
    pod_files(workload, tmp_path)
    config = GatewayConfig.load(config_in_pod(workload, tmp_path), environ=pod_environ(workload))

    # Where the database is and the password come from a Secret, not the ConfigMap: the
    # URL names a libpq service, defined in the service file PGSERVICEFILE points at.
    assert config.database_url is not None
    match = re.fullmatch(r"postgresql(?:\+psycopg)?:///\?service=([\w-]+)", config.database_url)
    assert match, config.database_url
    service_file = pod_environ(workload)["PGSERVICEFILE"]
    mount = mount_for(workload, service_file)
    assert mount["readOnly"] is True
    volumes = {v["name"]: v for v in workload["spec"]["template"]["spec"]["volumes"]}
    assert "secret" in volumes[mount["name"]], f"{service_file} is not in a Secret"
    service_conf = (tmp_path / service_file.lstrip("/")).read_text()
    assert f"[{match.group(1)}]" in service_conf.splitlines()
    assert re.search(r"^password=", service_conf, re.MULTILINE)
    # A CA file the service file names is in a mounted Secret too.
    for root_cert in re.findall(r"^sslrootcert=(.+)$", service_conf, re.MULTILINE):
        assert (tmp_path / root_cert.strip().lstrip("/")).is_file(), root_cert
        assert mount_for(workload, root_cert.strip())["readOnly"] is True


@pytest.mark.parametrize("workload", [gateway(), registry()], ids=["security-server", "registry"])
def test_the_container_runs_a_command_xweg_has(workload: Object) -> None:
    parsed = _parser().parse_args(container(workload)["args"])
    assert parsed.command in ("gateway", "registry") and parsed.action == "serve"
    assert "command" not in container(workload), "the image's ENTRYPOINT is xweg"


# -- the security server ------------------------------------------------------------------------


def gateway_config(tmp_path: Path) -> GatewayConfig:
    pod_files(gateway(), tmp_path)
    return GatewayConfig.load(config_in_pod(gateway(), tmp_path), environ=pod_environ(gateway()))


def test_the_probes_ask_the_client_listener(tmp_path: Path) -> None:
    workload, config = gateway(), gateway_config(tmp_path)
    probes = container(workload)
    expected = {"readinessProbe": "/readyz", "livenessProbe": "/healthz", "startupProbe": "/healthz"}
    for probe, path in expected.items():
        http = probes[probe]["httpGet"]
        assert http["path"] == path
        assert port_number(workload, http["port"]) == config.client_listener.port
        assert http.get("scheme", "HTTP") == "HTTP"


def test_container_ports_and_services_are_the_listeners(tmp_path: Path) -> None:
    workload, config = gateway(), gateway_config(tmp_path)
    assert config.management_listener is not None
    listeners = {
        "client": config.client_listener.port,
        "peer": config.peer_listener.port,
        "management": config.management_listener.port,
    }
    assert {p["name"]: p["containerPort"] for p in container(workload)["ports"]} == listeners
    pod_labels = workload["spec"]["template"]["metadata"]["labels"]
    services = {
        "xweg-gateway": "client",  # information systems
        "xweg-gateway-peer": "peer",  # other security servers
        "xweg-gateway-pods": "management",  # monitoring, per pod
    }
    for name, listener in services.items():
        service = one("Service", name)
        assert service["spec"]["selector"].items() <= pod_labels.items()
        (port,) = service["spec"]["ports"]
        assert port_number(workload, port["targetPort"]) == listeners[listener]
    assert one("Service", "xweg-gateway")["spec"]["type"] == "ClusterIP"
    assert workload["spec"]["serviceName"] == "xweg-gateway-pods"
    assert one("Service", "xweg-gateway-pods")["spec"]["clusterIP"] == "None"


def replica_problems(workload: Object, server: Object) -> list[str]:
    """Why the replicas of ``workload`` with configuration ``server`` (server.toml as TOML)
    would not share one message log correctly, if they are several; none: they would."""
    if workload["spec"].get("replicas", 1) < 2:
        return []
    problems = []
    if not is_postgres_url(server.get("database_url")):
        problems.append("several replicas without a PostgreSQL database_url keep separate SQLite logs")
    messagelog = server.get("messagelog", {})
    variable = messagelog.get("shard_env")
    if variable is None:
        problems.append("several replicas with one [messagelog] shard: the second is refused at start")
        return problems
    env = {e["name"]: e for e in container(workload).get("env", [])}
    source = env.get(variable, {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
    if source != "metadata.name":
        problems.append(f"[messagelog] shard_env names {variable}, which is not the pod's name")
    return problems


def test_replicas_share_postgresql_each_writing_a_shard_of_its_own(tmp_path: Path) -> None:
    workload, server = gateway(), server_toml(gateway())
    assert workload["spec"]["replicas"] >= 2
    assert replica_problems(workload, server) == []

    # The real loader gives each pod a shard of its own, in the one database.
    shards = set()
    for ordinal in range(workload["spec"]["replicas"]):
        root = tmp_path / f"pod-{ordinal}"
        pod_files(workload, root)
        config = GatewayConfig.load(config_in_pod(workload, root), environ=pod_environ(workload, ordinal))
        assert isinstance(config.message_log, PostgresLogShard)
        assert config.message_log.url == server["database_url"]
        shards.add(config.message_log.shard)
    assert shards == {f"xweg_gateway_{n}" for n in range(workload["spec"]["replicas"])}

    # Each pod keeps its volume: scaling down or deleting leaves the archives of its shard.
    assert workload["spec"]["persistentVolumeClaimRetentionPolicy"] == {
        "whenDeleted": "Retain",
        "whenScaled": "Retain",
    }

    # Preferably on different nodes, so that one node going away leaves a replica serving.
    affinity = workload["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    (preferred,) = affinity["preferredDuringSchedulingIgnoredDuringExecution"]
    term = preferred["podAffinityTerm"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert term["labelSelector"]["matchLabels"] == workload["spec"]["selector"]["matchLabels"]


def _set_env(workload: Object, name: str, source: Object) -> None:
    (env,) = [e for e in container(workload)["env"] if e["name"] == name]
    env.pop("value", None)
    env.pop("valueFrom", None)
    env.update(source)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda w, s: s.pop("database_url"), "without a PostgreSQL database_url"),
        (lambda w, s: s.update(database_url="sqlite:///shared.db"), "without a PostgreSQL database_url"),
        (lambda w, s: s["messagelog"].pop("shard_env"), "one [messagelog] shard"),
        (lambda w, s: _set_env(w, "POD_NAME", {"value": "xweg-gateway"}), "not the pod's name"),
        (lambda w, s: s["messagelog"].update(shard_env="PGSERVICEFILE"), "not the pod's name"),
    ],
    ids=["no-database", "sqlite", "one-shard", "fixed-name", "other-variable"],
)
def test_the_replica_check_refuses_replicas_that_cannot_share_a_log(change: Any, problem: str) -> None:
    # The check above is only worth something if each way of getting it wrong fails it.
    workload, server = copy.deepcopy(gateway()), server_toml(gateway())
    change(workload, server)
    problems = replica_problems(workload, server)
    assert any(problem in p for p in problems), problems
    workload["spec"]["replicas"] = 1
    assert replica_problems(workload, server) == []


def test_the_server_may_finish_exchanges_in_flight_before_it_is_killed(tmp_path: Path) -> None:
    workload, config = gateway(), gateway_config(tmp_path)
    grace = workload["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    pre_stop = container(workload)["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    assert grace > int(pre_stop[1]) + config.limits.shutdown_timeout_s


def test_the_disruption_budget_covers_the_servers_pods() -> None:
    workload, budget = gateway(), one("PodDisruptionBudget", "xweg-gateway")
    selector = budget["spec"]["selector"]["matchLabels"]
    assert selector == workload["spec"]["selector"]["matchLabels"]
    assert selector.items() <= workload["spec"]["template"]["metadata"]["labels"].items()
    # A drain may take one replica at a time, never the last one serving.
    replicas = workload["spec"]["replicas"]
    spec = budget["spec"]
    assert ("minAvailable" in spec) != ("maxUnavailable" in spec)
    evictable = spec["maxUnavailable"] if "maxUnavailable" in spec else replicas - spec["minAvailable"]
    assert isinstance(evictable, int), "a number of pods, not a percentage"
    assert 1 <= evictable < replicas


def test_resources_fit_a_server_of_about_120_mb() -> None:
    resources = container(gateway())["resources"]
    request = memory_bytes(resources["requests"]["memory"])
    limit = memory_bytes(resources["limits"]["memory"])
    assert GATEWAY_RSS_BYTES < request <= limit
    assert limit >= 3 * GATEWAY_RSS_BYTES, "room for bodies held in memory"
    assert resources["requests"]["cpu"] and resources["limits"]["cpu"]


def test_the_network_policy_admits_only_what_each_listener_is_for(tmp_path: Path) -> None:
    workload, config = gateway(), gateway_config(tmp_path)
    assert config.management_listener is not None
    policy = one("NetworkPolicy", "xweg-gateway")["spec"]
    assert policy["podSelector"]["matchLabels"] == workload["spec"]["selector"]["matchLabels"]
    assert sorted(policy["policyTypes"]) == ["Egress", "Ingress"]

    by_port = {}
    for rule in policy["ingress"]:
        (port,) = rule["ports"]
        assert port.get("protocol", "TCP") == "TCP"
        by_port[port_number(workload, port["port"])] = rule.get("from")
    assert set(by_port) == {
        config.client_listener.port,
        config.peer_listener.port,
        config.management_listener.port,
    }
    # Information systems: pods of this namespace carrying the label.
    (systems,) = by_port[config.client_listener.port]
    assert set(systems) == {"podSelector"} and systems["podSelector"]["matchLabels"]
    # Other organisations' servers: from anywhere.
    assert by_port[config.peer_listener.port] is None
    # Monitoring: its namespace only.
    (monitoring,) = by_port[config.management_listener.port]
    assert monitoring == {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}

    egress_ports = {
        (p.get("protocol", "TCP"), p["port"]) for rule in policy["egress"] for p in rule.get("ports", [])
    }
    assert {("UDP", 53), ("TCP", 53), ("TCP", 443), ("TCP", 5432)} <= egress_ports
    # Peers in this and other organisations, on the peer port this federation uses.
    assert ("TCP", config.peer_listener.port) in egress_ports
    # The registry in this cluster, on its own port.
    registry_rules = [
        rule
        for rule in policy["egress"]
        for to in rule.get("to", [])
        if to.get("podSelector", {}).get("matchLabels") == registry()["spec"]["selector"]["matchLabels"]
    ]
    (registry_rule,) = registry_rules
    (registry_port,) = registry_rule["ports"]
    assert registry_port["port"] == RegistrySettings.load(_registry_config(tmp_path), environ={}).port


def _registry_config(tmp_path: Path) -> Path:
    root = tmp_path / "registry-pod"
    pod_files(registry(), root)
    return config_in_pod(registry(), root)


# -- both workloads -------------------------------------------------------------------------------


@pytest.mark.parametrize("workload", [gateway(), registry()], ids=["security-server", "registry"])
def test_the_pod_runs_unprivileged_on_a_read_only_root(workload: Object) -> None:
    spec = workload["spec"]["template"]["spec"]
    pod = spec["securityContext"]
    assert pod["runAsNonRoot"] is True and pod["runAsUser"] != 0 and pod["runAsGroup"] != 0
    assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
    own = container(workload)["securityContext"]
    assert own["runAsNonRoot"] is True
    assert own["readOnlyRootFilesystem"] is True
    assert own["allowPrivilegeEscalation"] is False
    assert own["capabilities"] == {"drop": ["ALL"]}
    assert own["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["automountServiceAccountToken"] is False
    # Writable: the data volume and /tmp, nothing else.
    writable = {m["mountPath"] for m in container(workload)["volumeMounts"] if not m.get("readOnly")}
    assert writable == {"/var/lib/xweg", "/tmp"}
    volumes = {v["name"]: v for v in spec["volumes"]}
    (tmp,) = [m for m in container(workload)["volumeMounts"] if m["mountPath"] == "/tmp"]
    assert "emptyDir" in volumes[tmp["name"]]
    # Secret files are readable by the pod's group only.
    for volume in volumes.values():
        if "secret" in volume:
            assert volume["secret"]["defaultMode"] == 0o440
            assert pod["fsGroup"] == pod["runAsGroup"]


def test_the_registry_is_a_single_writer() -> None:
    workload = registry()
    assert workload["spec"]["replicas"] == 1
    # A rolling update would run two registries signing with one serial file at once.
    assert workload["spec"]["strategy"] == {"type": "Recreate"}


def test_the_registrys_probes_and_service_use_its_port(tmp_path: Path) -> None:
    workload = registry()
    settings = RegistrySettings.load(_registry_config(tmp_path), environ={})
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        http = container(workload)[probe]["httpGet"]
        assert http["path"] == "/healthz"
        assert port_number(workload, http["port"]) == settings.port
    service = one("Service", "xweg-registry")
    assert service["spec"]["selector"].items() <= workload["spec"]["template"]["metadata"]["labels"].items()
    (port,) = service["spec"]["ports"]
    assert port_number(workload, port["targetPort"]) == settings.port


def test_every_secret_a_pod_mounts_is_shown_in_the_example() -> None:
    for workload in (gateway(), registry()):
        for volume in workload["spec"]["template"]["spec"]["volumes"]:
            if "secret" in volume:
                assert example_secret(volume["secret"]["secretName"])["stringData"]
        for env in container(workload).get("env", []):
            ref = env.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                assert ref["key"] in example_secret(ref["name"])["stringData"]


def test_the_namespace_enforces_the_restricted_pod_security_standard() -> None:
    labels = one("Namespace", NAMESPACE)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
