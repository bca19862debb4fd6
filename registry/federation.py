"""The federation definition: the registry operator's TOML file of members, servers, groups and CAs.

The file is the registry's source of truth until a management API and a store exist.
(``approved_cas = ["trust/ca.pem"]``, a list of file names, still means CAs without
intermediates or OCSP.)  Loading it checks everything the published global configuration will promise: every
identifier is well formed, members and servers are unique, every server owner, client
and group member is registered, every auth certificate was issued by an approved CA to
exactly the server it is registered for.  A definition that loads builds a valid
:class:`trust.globalconf.GlobalConf`.

```toml
instance = "NRW"
ocsp_freshness_s = 3600                  # optional; X-Road's default

[[approved_cas]]                         # paths relative to this file
certificate = "trust/root.pem"           # the trust anchor
intermediates = ["trust/issuing.pem"]    # issuing CAs under it
ocsp_url = "http://127.0.0.1:8888/"
ocsp_responders = ["trust/ocsp.pem"]     # the delegated responders whose answers count

[[approved_tsas]]
name = "IT.NRW TSA"
url = "http://127.0.0.1:8889/"
certificate = "trust/tsa.pem"

[[members]]
class = "MUN"
code = "05774032"
name = "Stadt Paderborn"
subsystems = ["gewerbeamt"]

[[security_servers]]
owner = "NRW/MUN/05774032"
code = "ss1"
address = "127.0.0.1:5511"
auth_certificate = "servers/paderborn/auth.pem"   # or auth_certificates = [...] while rotating
clients = ["NRW/MUN/05774032/gewerbeamt"]

[[global_groups]]
code = "owl-kommunen"
members = ["NRW/MUN/05774032/gewerbeamt"]

[[services]]                             # the service catalogue, published for the directory
provider = "NRW/MUN/05774032/gewerbeamt" # a registered subsystem
code = "gewerbeanzeige"                  # not a metadata service's code (core.metadata)
version = "v1"                           # optional
protocol = "REST"                        # REST or SOAP
description = "Gewerbeanzeige"           # optional
standard = "XGewerbeanzeige 2.2"         # optional
authorities = ["MELDID:05774032"]        # optional: the authorities it answers for
area = "05774032"                        # optional: the official key of its area; none: everywhere
```
"""

from __future__ import annotations

import contextlib
import datetime as dt
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from core.identifiers import (
    ClientId,
    GlobalGroupId,
    MemberId,
    SecurityServerId,
    ServiceId,
    SubsystemId,
    check_part,
    parse_client_slash,
)
from core.metadata import is_reserved_service_code
from trust.ca import server_id_from_auth_certificate
from trust.certificates import describe, fingerprint
from trust.errors import TrustError
from trust.globalconf import (
    DEFAULT_OCSP_FRESHNESS_S,
    ApprovedCA,
    ApprovedTSA,
    GlobalConf,
    GlobalGroupInfo,
    MemberInfo,
    SecurityServerInfo,
    ServiceInfo,
)
from trust.keys import load_certificate, load_certificates

__all__ = ["FederationError", "FederationDefinition", "MAX_FEDERATION_FILE_BYTES"]

#: Bound on the definition file; thousands of members fit in far less.
MAX_FEDERATION_FILE_BYTES = 16 * 1024 * 1024


class FederationError(ValueError):
    """The federation definition is invalid; the message names the file and the entry."""


@dataclass(frozen=True)
class FederationDefinition:
    """A validated federation definition, ready to be published."""

    path: Path
    instance: str
    approved_cas: tuple[ApprovedCA, ...]
    members: tuple[MemberInfo, ...]
    security_servers: tuple[SecurityServerInfo, ...]
    global_groups: tuple[GlobalGroupInfo, ...]
    approved_tsas: tuple[ApprovedTSA, ...] = ()
    ocsp_freshness_s: int = DEFAULT_OCSP_FRESHNESS_S
    services: tuple[ServiceInfo, ...] = ()

    @classmethod
    def load(cls, path: Path) -> FederationDefinition:
        """Read and validate ``path``; raises :class:`FederationError` (a ValueError)."""
        return _Loader(Path(path)).load()


class _Loader:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.base = path.parent

    def error(self, where: str, message: str) -> FederationError:
        return FederationError(f"{self.path}: {where}: {message}" if where else f"{self.path}: {message}")

    def load(self) -> FederationDefinition:
        try:
            with open(self.path, "rb") as fh:
                raw = fh.read(MAX_FEDERATION_FILE_BYTES + 1)
        except OSError as exc:
            raise self.error("", f"cannot read: {exc.strerror or exc}") from exc
        if len(raw) > MAX_FEDERATION_FILE_BYTES:
            raise self.error("", f"larger than {MAX_FEDERATION_FILE_BYTES} bytes")
        try:
            data = tomllib.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise self.error("", f"not valid TOML: {exc}") from exc
        self.keys(
            data,
            "",
            {"instance"},
            {
                "approved_cas",
                "approved_tsas",
                "ocsp_freshness_s",
                "members",
                "security_servers",
                "global_groups",
                "services",
            },
        )

        instance = self.text(data, "instance", "")
        with self.at("instance"):
            check_part(instance, "instance")
        approved = self.load_cas(data.get("approved_cas", []))
        cas = tuple(c for ca in approved for c in (ca.certificate, *ca.intermediates))
        tsas = self.load_tsas(self.tables(data, "approved_tsas"), cas)
        freshness = data.get("ocsp_freshness_s", DEFAULT_OCSP_FRESHNESS_S)
        members = self.load_members(instance, self.tables(data, "members"))
        registered = {m.id: m for m in members}
        servers = self.load_servers(instance, registered, cas, self.tables(data, "security_servers"))
        groups = self.load_groups(instance, registered, self.tables(data, "global_groups"))
        services = self.load_services(registered, self.tables(data, "services"))
        definition = FederationDefinition(
            self.path, instance, approved, members, servers, groups, tsas, freshness, services
        )
        # A trial build catches any rule the checks above missed, with the file named.
        with self.at(""):
            epoch = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
            GlobalConf(
                instance,
                1,
                epoch,
                epoch + dt.timedelta(seconds=1),
                members,
                servers,
                groups,
                approved,
                tsas,
                freshness,
                services=services,
            )
        return definition

    # -- generic checks ---------------------------------------------------------------------

    def keys(self, table: dict[str, Any], where: str, required: set[str], optional: set[str]) -> None:
        missing = required - table.keys()
        if missing:
            raise self.error(where, f"missing {', '.join(sorted(missing))}")
        unknown = table.keys() - required - optional
        if unknown:
            raise self.error(where, f"unknown key(s) {', '.join(sorted(unknown))}")

    def text(self, table: dict[str, Any], key: str, where: str) -> str:
        value = table.get(key)
        if not isinstance(value, str) or not value:
            raise self.error(where, f"{key} must be a non-empty string")
        return value

    def strings(self, table: dict[str, Any], key: str, where: str) -> list[str]:
        value = table.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise self.error(where, f"{key} must be a list of non-empty strings")
        return value

    def tables(self, data: dict[str, Any], key: str) -> list[dict[str, Any]]:
        value = data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise self.error(key, "must be an array of tables ([[" + key + "]])")
        return value

    @contextlib.contextmanager
    def at(self, where: str) -> Iterator[None]:
        """Turn an identifier or constructor error into a FederationError naming the entry."""
        try:
            yield
        except FederationError:
            raise
        except ValueError as exc:  # IdentifierError is a ValueError too
            raise self.error(where, str(exc)) from exc

    def file(self, relative: str) -> Path:
        return (self.base / relative).resolve()

    # -- sections ---------------------------------------------------------------------------

    def certificates(self, where: str, relative: str, *, ca: bool) -> list[x509.Certificate]:
        try:
            loaded = load_certificates(self.file(relative))
        except (OSError, ValueError) as exc:
            raise self.error(where, f"cannot load: {exc}") from exc
        if not loaded:
            raise self.error(where, "holds no certificate")
        for cert in loaded:
            try:
                is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
            except x509.ExtensionNotFound:
                is_ca = False
            if ca and not is_ca:
                raise self.error(where, f"{describe(cert)} is not a CA certificate")
        return loaded

    def load_cas(self, value: object) -> tuple[ApprovedCA, ...]:
        if not isinstance(value, list) or not all(isinstance(v, str | dict) for v in value):
            raise self.error("approved_cas", "must be a list of file names or an array of tables")
        cas: list[ApprovedCA] = []
        seen: set[str] = set()
        for index, entry in enumerate(value):
            table: dict[str, Any] = {"certificate": entry} if isinstance(entry, str) else entry
            where = f"approved_cas[{index}]"
            self.keys(table, where, {"certificate"}, {"intermediates", "ocsp_url", "ocsp_responders"})
            roots = self.certificates(
                f"{where} ({table['certificate']})", self.text(table, "certificate", where), ca=True
            )
            intermediates = [
                cert
                for relative in self.strings(table, "intermediates", where)
                for cert in self.certificates(f"{where} intermediate {relative}", relative, ca=True)
            ]
            responders = [
                cert
                for relative in self.strings(table, "ocsp_responders", where)
                for cert in self.certificates(f"{where} OCSP responder {relative}", relative, ca=False)
            ]
            ocsp_url = table.get("ocsp_url")
            for root in roots:
                if fingerprint(root) in seen:
                    raise self.error(where, f"{describe(root)} is listed twice")
                seen.add(fingerprint(root))
                with self.at(where):
                    cas.append(ApprovedCA(root, tuple(intermediates), ocsp_url, tuple(responders)))
        return tuple(cas)

    def load_tsas(
        self, tables: list[dict[str, Any]], cas: tuple[x509.Certificate, ...]
    ) -> tuple[ApprovedTSA, ...]:
        tsas: list[ApprovedTSA] = []
        for index, table in enumerate(tables):
            where = f"approved_tsas[{index}]"
            self.keys(table, where, {"name", "url", "certificate"}, set())
            relative = self.text(table, "certificate", where)
            cert = self.certificates(f"{where} ({relative})", relative, ca=False)[0]
            if not any(_issued_by(cert, ca) for ca in cas):
                raise self.error(where, f"{describe(cert)} was not issued by an approved CA")
            with self.at(where):
                tsas.append(
                    ApprovedTSA(self.text(table, "name", where), self.text(table, "url", where), cert)
                )
        return tuple(tsas)

    def load_members(self, instance: str, tables: list[dict[str, Any]]) -> tuple[MemberInfo, ...]:
        members: dict[MemberId, MemberInfo] = {}
        for index, table in enumerate(tables):
            where = f"members[{index}]"
            self.keys(table, where, {"class", "code", "name"}, {"subsystems"})
            member_class, code = self.text(table, "class", where), self.text(table, "code", where)
            with self.at(where):
                member_id = MemberId(instance, member_class, code)
            where = f"members[{index}] ({member_id.slash()})"
            if member_id in members:
                raise self.error(where, "duplicate member")
            name, subsystems = self.text(table, "name", where), self.strings(table, "subsystems", where)
            with self.at(where):
                members[member_id] = MemberInfo(member_id, name, tuple(subsystems))
        return tuple(members.values())

    def client(self, where: str, text: str, registered: dict[MemberId, MemberInfo]) -> ClientId:
        with self.at(where):
            client = parse_client_slash(text)
        info = registered.get(client.member)
        if info is None:
            raise self.error(where, f"{client} is not a registered member")
        if isinstance(client, SubsystemId) and client.subsystem_code not in info.subsystems:
            raise self.error(where, f"{client} is not a subsystem of {info.id}")
        return client

    def load_servers(
        self,
        instance: str,
        registered: dict[MemberId, MemberInfo],
        cas: tuple[x509.Certificate, ...],
        tables: list[dict[str, Any]],
    ) -> tuple[SecurityServerInfo, ...]:
        servers: dict[SecurityServerId, SecurityServerInfo] = {}
        owners_of: dict[str, SecurityServerId] = {}
        for index, table in enumerate(tables):
            where = f"security_servers[{index}]"
            self.keys(
                table,
                where,
                {"owner", "code", "address"},
                {"auth_certificate", "auth_certificates", "clients"},
            )
            owner_text, code = self.text(table, "owner", where), self.text(table, "code", where)
            with self.at(where):
                owner = MemberId.parse_slash(owner_text)
                server_id = SecurityServerId(owner, code)
            where = f"security_servers[{index}] ({server_id.slash()})"
            if owner.instance != instance:
                raise self.error(where, f"owner {owner} is not of instance {instance}")
            if owner not in registered:
                raise self.error(where, f"owner {owner} is not a registered member")
            if server_id in servers:
                raise self.error(where, "duplicate security server")
            cert_files = self.strings(table, "auth_certificates", where)
            if "auth_certificate" in table:
                cert_files = [self.text(table, "auth_certificate", where), *cert_files]
            if not cert_files:
                raise self.error(where, "needs auth_certificate (or auth_certificates)")
            fingerprints: list[str] = []
            for relative in cert_files:
                fp = self.auth_certificate(f"{where} auth certificate {relative}", relative, server_id, cas)
                if fp in owners_of:
                    raise self.error(
                        where, f"auth certificate {relative} is already registered for {owners_of[fp]}"
                    )
                owners_of[fp] = server_id
                fingerprints.append(fp)
            clients = tuple(
                self.client(f"{where} client {text!r}", text, registered)
                for text in self.strings(table, "clients", where)
            )
            address = self.text(table, "address", where)
            with self.at(where):
                servers[server_id] = SecurityServerInfo(server_id, address, tuple(fingerprints), clients)
        return tuple(servers.values())

    def auth_certificate(
        self, where: str, relative: str, server_id: SecurityServerId, cas: tuple[x509.Certificate, ...]
    ) -> str:
        try:
            cert = load_certificate(self.file(relative))
        except (OSError, ValueError) as exc:
            raise self.error(where, f"cannot load: {exc}") from exc
        # Registering a certificate for the wrong server would let that server impersonate this one.
        try:
            named = server_id_from_auth_certificate(cert)
        except TrustError as exc:
            raise self.error(where, str(exc)) from exc
        if named != server_id:
            raise self.error(where, f"{describe(cert)} was issued to {named}, not to {server_id}")
        if not any(_issued_by(cert, ca) for ca in cas):
            raise self.error(where, f"{describe(cert)} was not issued by an approved CA")
        return fingerprint(cert)

    def load_groups(
        self, instance: str, registered: dict[MemberId, MemberInfo], tables: list[dict[str, Any]]
    ) -> tuple[GlobalGroupInfo, ...]:
        groups: dict[GlobalGroupId, GlobalGroupInfo] = {}
        for index, table in enumerate(tables):
            where = f"global_groups[{index}]"
            self.keys(table, where, {"code"}, {"members", "description"})
            code = self.text(table, "code", where)
            with self.at(where):
                group_id = GlobalGroupId(instance, code)
            where = f"global_groups[{index}] ({group_id.slash()})"
            if group_id in groups:
                raise self.error(where, "duplicate global group")
            members = tuple(
                self.client(f"{where} member {text!r}", text, registered)
                for text in self.strings(table, "members", where)
            )
            with self.at(where):
                groups[group_id] = GlobalGroupInfo(group_id, members)
        return tuple(groups.values())

    def load_services(
        self, registered: dict[MemberId, MemberInfo], tables: list[dict[str, Any]]
    ) -> tuple[ServiceInfo, ...]:
        services: dict[ServiceId, ServiceInfo] = {}
        for index, table in enumerate(tables):
            where = f"services[{index}]"
            self.keys(
                table,
                where,
                {"provider", "code", "protocol"},
                {"version", "description", "standard", "authorities", "area"},
            )
            provider_text = self.text(table, "provider", where)
            with self.at(where):
                provider = SubsystemId.parse_slash(provider_text)
            # Only a registered subsystem provides services; the error names what is missing.
            self.client(where, provider_text, registered)
            code = self.text(table, "code", where)
            if is_reserved_service_code(code):
                raise self.error(
                    where, f"service code {code!r} is reserved: security servers answer it themselves"
                )
            version = self.text(table, "version", where) if "version" in table else None
            with self.at(where):
                service_id = provider.service(code, version)
            where = f"services[{index}] ({service_id.slash()})"
            if service_id in services:
                raise self.error(where, "duplicate service")
            protocol = self.text(table, "protocol", where)
            with self.at(where):
                services[service_id] = ServiceInfo(
                    provider,
                    code,
                    version,
                    protocol.upper(),  # as the registry store takes it
                    table.get("description", ""),
                    table.get("standard", ""),
                    tuple(self.strings(table, "authorities", where)),
                    table.get("area"),
                )
        return tuple(services.values())


def _issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True
