"""``xweg gateway client|service|endpoint|acl|group``, through ``xweg.cli.main``, on a real data folder.

The security server's folder holds its configuration file, the configuration anchor and
a global configuration signed with the anchor's key, as a server leaves them after it
adopted one; a small HTTP server on loopback serves a REST backend's OpenAPI document.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import http.server
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from core.identifiers import GlobalGroupId, MemberId, SubsystemId
from gateway.confclient.state import PostgresStateStore
from gateway.serverconf.model import ConnectionType, ServiceEntry
from gateway.serverconf.store import AuditContext, ServerConfStore
from tests.databases import fresh_postgres_database
from trust.anchor import Anchor, AnchorKey, save_anchor
from trust.globalconf import GlobalConf, GlobalGroupInfo, MemberInfo, sign_global_conf
from trust.keys import generate_private_key, public_key_pem
from xweg.cli import main

PADERBORN = MemberId("NRW", "MUN", "05774032")
GEWERBEAMT = PADERBORN.subsystem("gewerbeamt")
SOZIALAMT = PADERBORN.subsystem("sozialamt")
ARBEITSSCHUTZ = SubsystemId("NRW", "GOV", "057", "arbeitsschutz")
OWL = GlobalGroupId("NRW", "owl-kommunen")
SERVICE = "NRW/MUN/05774032/gewerbeamt/betriebe/v1"
KEY_ID = "2025-1"

CONFIG = """\
server_id = "NRW/MUN/05774032/ss1"
anchor = "anchor.json"
data_dir = "data"

[client_listener]
host = "127.0.0.1"
port = 5510

[peer_listener]
host = "127.0.0.1"
port = 5511

[keys]
auth_key = "keys/auth.key"
auth_certificate = "keys/auth.pem"
"""

OPENAPI: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "Betriebe", "version": "1"},
    "paths": {
        "/betriebe": {"get": {}, "post": {}},
        "/betriebe/{id}": {"get": {}},
        "/berichte/{jahr}.pdf": {"get": {}},  # a template inside a segment: no pattern says it
    },
}


class _OpenApiHandler(http.server.BaseHTTPRequestHandler):
    document: dict[str, Any] = OPENAPI

    def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
        if self.path != "/openapi.json":
            self.send_error(404)
            return
        body = json.dumps(type(self).document).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the standard library's name)
        pass


@dataclass
class Server:
    """A security server's folder, its registry's key, and a backend serving an OpenAPI document."""

    folder: Path
    registry_key: ec.EllipticCurvePrivateKey
    backend: str
    handler: type[_OpenApiHandler]
    calls: list[list[str]] = field(default_factory=list)

    @property
    def config(self) -> Path:
        return self.folder / "gateway.toml"

    @property
    def globalconf(self) -> Path:
        return self.folder / "data" / "globalconf.jws"

    def write_globalconf(
        self,
        *,
        expires_in: dt.timedelta = dt.timedelta(hours=1),
        key: ec.EllipticCurvePrivateKey | None = None,
    ) -> None:
        now = dt.datetime.now(dt.UTC)
        conf = GlobalConf(
            instance="NRW",
            serial=1,
            generated_at=now - dt.timedelta(minutes=10) + min(expires_in, dt.timedelta()),
            expires_at=now + expires_in,
            members=(
                MemberInfo(PADERBORN, "Stadt Paderborn", ("gewerbeamt", "sozialamt")),
                MemberInfo(ARBEITSSCHUTZ.member, "Bezirksregierung Detmold", ("arbeitsschutz",)),
            ),
            security_servers=(),
            global_groups=(GlobalGroupInfo(OWL, (ARBEITSSCHUTZ,)),),
            approved_cas=(),
        )
        self.globalconf.write_bytes(sign_global_conf(conf, key or self.registry_key, KEY_ID))

    def store(self) -> ServerConfStore:
        return ServerConfStore.open("sqlite:///serverconf.db", base=self.folder / "data")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    (tmp_path / "data").mkdir()
    (tmp_path / "gateway.toml").write_text(CONFIG)
    key = generate_private_key()
    anchor = Anchor(
        instance="NRW",
        registry_urls=("http://127.0.0.1:9/",),
        signing_keys=(AnchorKey(KEY_ID, public_key_pem(key)),),
        generated_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=1),
    )
    save_anchor(anchor, tmp_path / "anchor.json")
    handler = type("Handler", (_OpenApiHandler,), {"document": OPENAPI})
    backend = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=backend.serve_forever, daemon=True)
    thread.start()
    made = Server(tmp_path, key, f"http://127.0.0.1:{backend.server_address[1]}", handler)
    made.write_globalconf()
    try:
        yield made
    finally:
        backend.shutdown()
        backend.server_close()


def run(capsys: pytest.CaptureFixture[str], server: Server, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()  # what fixtures printed is not the command's
    code = main(["gateway", *argv, "--config", str(server.config)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def ok(capsys: pytest.CaptureFixture[str], server: Server, *argv: str) -> str:
    """A change that must succeed: one line out (or JSON), and only audit log lines on stderr."""
    code, out, err = run(capsys, server, *argv)
    assert code == 0, (argv, err)
    if "--json" not in argv and argv[-1] != "list" and argv[1] != "list":
        assert len(out.splitlines()) == 1, (argv, out)
    assert all("serverconf.audit" in line for line in err.splitlines()), (argv, err)
    return out


def refused(capsys: pytest.CaptureFixture[str], server: Server, *argv: str) -> str:
    """A refusal: exit status 1, nothing on stdout, one line on stderr."""
    code, out, err = run(capsys, server, *argv)
    assert (code, out) == (1, ""), (argv, out, err)
    assert len(err.splitlines()) == 1, (argv, err)
    return err.strip()


def certificate_file(folder: Path, name: str) -> tuple[Path, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    path = folder / f"{name}.pem"
    path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return path, hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).hexdigest()


def test_a_provider_is_configured_from_the_command_line(
    capsys: pytest.CaptureFixture[str], server: Server
) -> None:
    out = ok(capsys, server, "client", "add", GEWERBEAMT.slash(), "--connection", "http")
    assert out == "added client NRW/MUN/05774032/gewerbeamt  http  no token  certificates: 0\n"
    added = json.loads(
        ok(
            capsys,
            server,
            "service",
            "add",
            SERVICE,
            "--url",
            server.backend + "/api/v1",
            "--openapi-url",
            server.backend + "/openapi.json",
            "--timeout",
            "5",
            "--json",
        )
    )
    assert added["openapi_endpoints"] == ["GET /betriebe", "POST /betriebe", "GET /betriebe/*"]
    assert len(added["skipped"]) == 1 and added["skipped"][0].startswith("GET /berichte/*.pdf:")
    out = ok(capsys, server, "endpoint", "add", SERVICE, "delete", "/betriebe/{id}")
    assert out == f"added endpoint DELETE /betriebe/* to {SERVICE}\n"
    out = ok(capsys, server, "endpoint", "list", SERVICE)
    assert out.splitlines() == [
        f"{SERVICE}  GET /betriebe  (OpenAPI)",
        f"{SERVICE}  POST /betriebe  (OpenAPI)",
        f"{SERVICE}  GET /betriebe/*  (OpenAPI)",
        f"{SERVICE}  DELETE /betriebe/*",
    ]
    unversioned = "NRW/MUN/05774032/gewerbeamt/betriebe"
    out = ok(
        capsys, server, "acl", "grant", unversioned, ARBEITSSCHUTZ.slash(), "--endpoint", "GET /betriebe/{id}"
    )
    assert out == f"granted: {unversioned}  GET /betriebe/*  SUBSYSTEM:NRW/GOV/057/arbeitsschutz\n"
    ok(capsys, server, "acl", "grant", SERVICE, "GLOBALGROUP:NRW/owl-kommunen", "--endpoint", "GET /betriebe")
    ok(capsys, server, "group", "add", "pruefer", "--description", "Prüfdienste")
    out = ok(capsys, server, "group", "member", "add", "pruefer", SOZIALAMT.slash())
    assert out == (
        "added NRW/MUN/05774032/sozialamt to local group pruefer  "
        "members: NRW/MUN/05774032/sozialamt  Prüfdienste\n"
    )
    ok(capsys, server, "acl", "grant", SERVICE, "LOCALGROUP:pruefer")
    grants = json.loads(ok(capsys, server, "acl", "list", SERVICE, "--json"))
    assert grants == [
        {
            "service": unversioned,
            "subject": "SUBSYSTEM:NRW/GOV/057/arbeitsschutz",
            "endpoint": {"method": "GET", "path": "/betriebe/*"},
        },
        {
            "service": unversioned,
            "subject": "GLOBALGROUP:NRW/owl-kommunen",
            "endpoint": {"method": "GET", "path": "/betriebe"},
        },
        {"service": unversioned, "subject": "LOCALGROUP:pruefer", "endpoint": None},
    ]
    pem_file, fingerprint = certificate_file(server.folder, "fachverfahren")
    out = ok(capsys, server, "client", "cert", "add", GEWERBEAMT.slash(), str(pem_file))
    assert out.startswith(f"registered certificate {fingerprint} (CN=fachverfahren, until ")
    ok(capsys, server, "client", "set", GEWERBEAMT.slash(), "--connection", "https-mtls", "--token-required")
    assert ok(capsys, server, "client", "list") == (
        "NRW/MUN/05774032/gewerbeamt  https-mtls  token required  certificates: 1\n"
    )
    out = ok(capsys, server, "service", "set", SERVICE, "--timeout", "7.5", "--no-verify-tls")
    assert out == (
        f"service {SERVICE}  rest  {server.backend}/api/v1  timeout 7.5 s  TLS not verified  "
        f"OpenAPI {server.backend}/openapi.json\n"
    )

    with server.store() as store:
        snapshot = store.snapshot()
        trail = store.audit_trail(limit=1000)
    assert {entry["actor"] for entry in trail} == {"local"}
    service = GEWERBEAMT.service("betriebe", "v1")
    assert snapshot.allows(ARBEITSSCHUTZ, service, lambda g: (), method="GET", path="/betriebe/42")
    assert not snapshot.allows(ARBEITSSCHUTZ, service, lambda g: (), method="DELETE", path="/betriebe/42")
    assert snapshot.allows(SOZIALAMT, service, lambda g: ())
    entry = snapshot.client(GEWERBEAMT)
    assert entry is not None and entry.certificate_fingerprints == frozenset({fingerprint})

    # The backend's document changes: GET /betriebe/{id} is gone, and the right on it with it.
    server.handler.document = {"openapi": "3.0.3", "paths": {"/betriebe": {"get": {}}, "/suche": {"get": {}}}}
    out = ok(capsys, server, "endpoint", "refresh", SERVICE)
    assert out == f"{SERVICE}: 2 endpoints from its OpenAPI document\n"
    assert [g["subject"] for g in json.loads(ok(capsys, server, "acl", "list", "--json"))] == [
        "GLOBALGROUP:NRW/owl-kommunen",
        "LOCALGROUP:pruefer",
    ]

    # And everything goes again, in an order the store accepts.
    ok(capsys, server, "client", "cert", "remove", GEWERBEAMT.slash(), fingerprint)
    ok(capsys, server, "acl", "revoke", SERVICE, "LOCALGROUP:pruefer")
    ok(capsys, server, "group", "member", "remove", "pruefer", SOZIALAMT.slash())
    assert ok(capsys, server, "group", "list") == "pruefer  members: -  Prüfdienste\n"
    ok(capsys, server, "group", "remove", "pruefer")
    ok(capsys, server, "endpoint", "remove", SERVICE, "DELETE", "/betriebe/{id}")
    out = ok(capsys, server, "service", "remove", SERVICE)
    assert out == f"removed service {SERVICE} with its endpoints and the rights on them\n"
    assert (
        ok(capsys, server, "client", "remove", GEWERBEAMT.slash())
        == "removed client NRW/MUN/05774032/gewerbeamt\n"
    )
    assert json.loads(ok(capsys, server, "client", "list", "--json")) == []
    with server.store() as store:
        assert store.snapshot().grants == ()
        assert store.list_endpoints() == []


@pytest.fixture
def provider(server: Server) -> Server:
    """Gewerbeamt as a client with one REST service, written straight into the store."""
    context = AuditContext("test", dt.datetime.now(dt.UTC))
    with server.store() as store:
        store.add_client(GEWERBEAMT, context, connection=ConnectionType.HTTP, known_client=lambda c: True)
        store.add_service(
            ServiceEntry(GEWERBEAMT.service("betriebe", "v1"), server.backend + "/api"), context
        )
        store.add_group("pruefer", context)
    return server


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ("client", "add", "NRW/MUN/09999999/gewerbeamt"),
            "xweg gateway client add: member NRW/MUN/09999999 is not in the global configuration",
        ),
        (
            ("client", "add", GEWERBEAMT.slash()),
            "xweg gateway client add: NRW/MUN/05774032/gewerbeamt is already a client",
        ),
        (("client", "add", "NRW/MUN"), "xweg gateway client add: client identifier"),
        (("client", "set", GEWERBEAMT.slash()), "xweg gateway client set: nothing to change"),
        (
            ("service", "add", "NRW/GOV/057/arbeitsschutz/meldung/v1", "--url", "http://127.0.0.1:1/"),
            "its provider NRW/GOV/057/arbeitsschutz is not a client of this security server",
        ),
        (
            ("service", "add", f"{GEWERBEAMT.slash()}/soap/v1", "--url", "http://x/", "--protocol", "soap",
             "--openapi-url", "http://x/openapi.json"),
            "openapi_url is for REST services only",
        ),
        (
            ("service", "add", f"{GEWERBEAMT.slash()}/neu/v1", "--url", "http://127.0.0.1:1/",
             "--openapi-url", "http://127.0.0.1:1/openapi.json", "--timeout", "2"),
            "xweg gateway service add: cannot read the OpenAPI document at http://127.0.0.1:1/openapi.json",
        ),
        (
            ("acl", "grant", f"{GEWERBEAMT.slash()}/listMethods", ARBEITSSCHUTZ.slash()),
            "'listMethods' is a metadata service, which every client may call",
        ),
        (
            ("acl", "grant", SERVICE, "GLOBALGROUP:NRW/elsewhere"),
            "xweg gateway acl grant: global group NRW/elsewhere is not in the global configuration",
        ),
        (
            ("acl", "grant", SERVICE, "LOCALGROUP:leitung"),
            "xweg gateway acl grant: local group leitung does not exist",
        ),
        (
            ("acl", "grant", SERVICE, ARBEITSSCHUTZ.slash(), "--endpoint", "GET"),
            'an endpoint is given as "METHOD PATH"',
        ),
        (
            ("acl", "grant", SERVICE, ARBEITSSCHUTZ.slash(), "--endpoint", "GET /betriebe"),
            "xweg gateway acl grant: GET /betriebe is not an endpoint of " + SERVICE,
        ),
        (("acl", "revoke", SERVICE, "LOCALGROUP:pruefer"), "LOCALGROUP:pruefer has no right on the whole"),
        (("endpoint", "add", SERVICE, "GET", "/**"), "matches every path"),
        (("endpoint", "refresh", SERVICE), f"service {SERVICE} has no OpenAPI document"),
        (
            ("group", "member", "add", "pruefer", "NRW/MUN/05774032/nowhere"),
            "xweg gateway group member add: NRW/MUN/05774032/nowhere is not a member or subsystem",
        ),
        (("group", "remove", "leitung"), "xweg gateway group remove: local group leitung does not exist"),
        (("client", "cert", "add", GEWERBEAMT.slash(), "missing.pem"), "cannot read missing.pem"),
    ],
)  # fmt: skip
def test_refusals_are_one_line_and_change_nothing(
    capsys: pytest.CaptureFixture[str], provider: Server, argv: tuple[str, ...], message: str
) -> None:
    with provider.store() as store:
        marker = store.change_marker()
    assert message in refused(capsys, provider, *argv)
    with provider.store() as store:
        assert store.change_marker() == marker


def test_without_an_adopted_global_configuration_only_local_facts_are_accepted(
    capsys: pytest.CaptureFixture[str], provider: Server
) -> None:
    provider.globalconf.unlink()
    message = refused(capsys, provider, "acl", "grant", SERVICE, ARBEITSSCHUTZ.slash())
    assert message.startswith(f"xweg gateway acl grant: no global configuration in {provider.globalconf}")
    assert "no global configuration" in refused(capsys, provider, "client", "add", SOZIALAMT.slash())
    assert "no global configuration" in refused(
        capsys, provider, "group", "member", "add", "pruefer", SOZIALAMT.slash()
    )
    # A local group and the configuration of this server itself need no global configuration.
    ok(capsys, provider, "acl", "grant", SERVICE, "LOCALGROUP:pruefer")
    ok(capsys, provider, "endpoint", "add", SERVICE, "GET", "/betriebe")


@pytest.fixture
def database_url() -> Iterator[str]:
    yield from fresh_postgres_database("xweg_serverconfcmd")


@pytest.mark.postgres
def test_replicas_check_against_the_global_configuration_they_share(
    capsys: pytest.CaptureFixture[str], server: Server, database_url: str
) -> None:
    # A replica of a server on PostgreSQL keeps no globalconf.jws: the adopted document is
    # in the shared database, and what is in data_dir (here, a stale file) is not read.
    document = server.globalconf.read_bytes()
    server.globalconf.write_bytes(b"not the adopted document")
    server.config.write_text(f'database_url = "{database_url}"\n' + server.config.read_text())
    message = refused(capsys, server, "client", "add", SOZIALAMT.slash())
    assert "no global configuration in postgresql://postgres@127.0.0.1:5432/" in message
    assert "(schema confclient)" in message
    shared = PostgresStateStore(database_url)
    try:
        shared.save(document, 1, json.dumps({"serial": 1}).encode())
    finally:
        shared.close()
    ok(capsys, server, "client", "add", SOZIALAMT.slash())


@pytest.mark.postgres
def test_the_database_url_of_the_command_line_is_the_one_read(
    capsys: pytest.CaptureFixture[str], server: Server, database_url: str
) -> None:
    # As `xweg gateway serve --database-url URL` is given it, so is every command on the
    # server's configuration: the file names no database here.
    document = server.globalconf.read_bytes()
    server.globalconf.unlink()
    shared = PostgresStateStore(database_url)
    try:
        shared.save(document, 1, json.dumps({"serial": 1}).encode())
    finally:
        shared.close()
    assert "no global configuration in" in refused(capsys, server, "client", "add", SOZIALAMT.slash())
    ok(capsys, server, "client", "add", SOZIALAMT.slash(), "--database-url", database_url)
    # The client went into the store in that database, not into data_dir's.
    listed = json.loads(ok(capsys, server, "client", "list", "--json", "--database-url", database_url))
    assert SOZIALAMT.slash() in json.dumps(listed)
    assert SOZIALAMT.slash() not in json.dumps(json.loads(ok(capsys, server, "client", "list", "--json")))


def test_an_unreachable_shared_database_is_a_one_line_refusal(
    capsys: pytest.CaptureFixture[str], server: Server
) -> None:
    # The configuration store stays in data_dir; the global configuration the replicas
    # share is in a database that cannot be reached.
    url = "postgresql://xweg:s3cr3t@127.0.0.1:1/ss1"
    text = f'database_url = "{url}"\n' + server.config.read_text()
    server.config.write_text(text + '\n[serverconf]\ndatabase_url = "sqlite:///serverconf.db"\n')
    message = refused(capsys, server, "acl", "grant", SERVICE, ARBEITSSCHUTZ.slash())
    assert message.startswith(
        "xweg gateway acl grant: the global configuration in postgresql://xweg:***@127.0.0.1:1/ss1"
        " (schema confclient) cannot be read: "
    ), message
    assert "s3cr3t" not in message


def test_an_expired_or_forged_global_configuration_is_not_used(
    capsys: pytest.CaptureFixture[str], provider: Server
) -> None:
    provider.write_globalconf(expires_in=-dt.timedelta(minutes=5))
    message = refused(capsys, provider, "acl", "grant", SERVICE, ARBEITSSCHUTZ.slash())
    assert f"the global configuration in {provider.globalconf} is not usable" in message
    assert "expired" in message
    provider.write_globalconf(key=generate_private_key())  # not the anchor's key
    message = refused(capsys, provider, "acl", "grant", SERVICE, ARBEITSSCHUTZ.slash())
    assert f"the global configuration in {provider.globalconf} is not usable" in message
    provider.write_globalconf()
    ok(capsys, provider, "acl", "grant", SERVICE, ARBEITSSCHUTZ.slash())


def test_a_configuration_file_that_cannot_be_read_is_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code = main(["gateway", "client", "list", "--config", str(tmp_path / "missing.toml")])
    captured = capsys.readouterr()
    assert (code, captured.out) == (1, "")
    assert captured.err.startswith(f"xweg gateway client list: {tmp_path / 'missing.toml'}:")
    assert len(captured.err.splitlines()) == 1


def test_the_store_url_comes_from_the_configuration_file(
    capsys: pytest.CaptureFixture[str], server: Server
) -> None:
    server.config.write_text(CONFIG + '\n[serverconf]\ndatabase_url = "sqlite:///elsewhere/conf.db"\n')
    ok(capsys, server, "group", "add", "pruefer")
    with ServerConfStore.open("sqlite:///elsewhere/conf.db", base=server.folder / "data") as store:
        assert [g["code"] for g in store.list_groups()] == ["pruefer"]
        assert store.audit_trail()[0]["actor"] == "local"
