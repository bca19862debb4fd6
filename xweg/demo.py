"""``xweg demo``: the OWL federation on this machine, with real exchanges between authorities.

Starts the registry, a security server each for IT.NRW, the Bezirksregierung Detmold,
Paderborn (which also hosts Kreis Paderborn), Delbrück and Bielefeld, and the demo
backends; then Paderborn's Gewerbeamt notifies a Gewerbeanzeige to the Bezirksregierung
and the statistics office, Bielefeld and Delbrück do likewise, and Kreis Paderborn tries
a service it was never granted.  Every message log is verified at the end.
"""

from __future__ import annotations

import datetime as dt
import json
import signal
import ssl
import textwrap
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.identifiers import ClientId, ServiceId, SubsystemId
from gateway.database import redact_url
from trust.anchor import load_anchor
from xweg.audit import checkpoint_signature_check, signature_check, trust_from_anchor
from xweg.federation import (
    BIELEFELD,
    DELBRUECK,
    GEWERBEANZEIGE,
    KREIS_PB,
    MELDEAUSKUNFT,
    OWL,
    PADERBORN,
    STATISTIK,
    FederationError,
    Layout,
    RunningFederation,
    ServicePlan,
    prepare,
    rest_path,
)

__all__ = ["run_demo", "example_request", "Exchange", "call"]


def _anzeige(
    art: str, gemeinde: str, betrieb: str, taetigkeit: str, wz: str, person: dict[str, str]
) -> dict[str, Any]:
    return {
        "anzeigeId": str(uuid.uuid4()),
        "anzeigeart": art,
        "autor": {"praefix": "MELDID", "kennung": gemeinde},
        "leser": {"praefix": "MELDID", "kennung": "057"},
        "gemeindeschluessel": gemeinde,
        "betrieb": {"id": str(uuid.uuid4()), "name": betrieb, "rechtsform": "GmbH"},
        "gueltigAb": "2026-12-01",
        "taetigkeit": {"text": taetigkeit, "wz2008": wz},
        "beschaeftigte": {"vollzeit": 4, "teilzeit": 2},
        "person": person,
        "anschrift": {"strasse": "Musterweg 1", "plz": "33098", "ort": "Paderborn"},
    }


def _statistik(anzeige: dict[str, Any]) -> dict[str, Any]:
    """The reduced view the statistics office receives: no names, no addresses."""
    return {
        "anzeigeId": anzeige["anzeigeId"],
        "anzeigeart": anzeige["anzeigeart"],
        "gemeindeschluessel": anzeige["gemeindeschluessel"],
        "wz2008": anzeige["taetigkeit"]["wz2008"],
        "beschaeftigte": anzeige["beschaeftigte"],
    }


_PERSON = {
    "familienname": "Muster",
    "vorname": "Erika",
    "geburtsdatum": "1980-01-01",
    "staatsangehoerigkeit": "000",
}


def example_request(service: ServicePlan) -> tuple[ClientId, str, str, Any]:
    anzeige = _anzeige(
        "Anmeldung", "05774032", "Bäckerei Muster GmbH", "Backwaren, Herstellung", "10.71.0", _PERSON
    )
    if service.id == STATISTIK:
        return (
            PADERBORN.subsystem("gewerbeamt"),
            "POST",
            rest_path(service.id, "/meldungen"),
            _statistik(anzeige),
        )
    return PADERBORN.subsystem("gewerbeamt"), "POST", rest_path(service.id, "/anzeigen"), anzeige


_MELDEWESEN_NS = "urn:xweg:demo:meldewesen"


def wsdl_url(client_url: str, service: ServiceId) -> str:
    """X-Road's HTTP GET form of getWsdl on a security server's client listener."""
    provider = service.provider
    query = urllib.parse.urlencode(
        {
            "xRoadInstance": provider.member.instance,
            "memberClass": provider.member.member_class,
            "memberCode": provider.member.member_code,
            "subsystemCode": provider.subsystem_code,
            "serviceCode": service.service_code,
            "version": service.service_version or "",
        }
    )
    return f"{client_url}/wsdl?{query}"


def example_envelope(service: ServicePlan) -> tuple[ClientId, str]:
    """Delbrück's residents' register asking Bielefeld's: X-Road's own example, adapted."""
    client = DELBRUECK.subsystem("meldewesen")
    provider = service.id.provider
    version = (
        f"<id:serviceVersion>{service.id.service_version}</id:serviceVersion>"
        if service.id.service_version
        else ""
    )
    if service.id.service_code == "meldeauskunft":
        body = (
            "<m:meldeauskunft><m:familienname>Muster</m:familienname>"
            "<m:vornamen>Erika</m:vornamen></m:meldeauskunft>"
        )
    else:  # rueckmeldung, XMeld 0201: Max Muster moved in at Delbrück
        body = (
            f"<m:rueckmeldung><m:nachrichtId>{uuid.uuid4()}</m:nachrichtId>"
            "<m:absender><m:praefix>MELDID</m:praefix><m:kennung>05774020</m:kennung></m:absender>"
            "<m:person><m:familienname>Muster</m:familienname><m:vornamen>Max</m:vornamen>"
            "<m:geburtsdatum>1983-09-30</m:geburtsdatum></m:person>"
            "<m:neueAnschrift><m:strasse>Lange Straße</m:strasse><m:hausnummer>1</m:hausnummer>"
            "<m:postleitzahl>33129</m:postleitzahl><m:wohnort>Delbrück</m:wohnort>"
            "<m:gemeindeschluessel>05774020</m:gemeindeschluessel></m:neueAnschrift>"
            "<m:einzugsdatum>2026-11-02</m:einzugsdatum></m:rueckmeldung>"
        )
    envelope = f"""<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/"
    xmlns:xrd="http://x-road.eu/xsd/xroad.xsd" xmlns:id="http://x-road.eu/xsd/identifiers"
    xmlns:m="{_MELDEWESEN_NS}">
  <SOAP-ENV:Header>
    <xrd:client id:objectType="SUBSYSTEM">
      <id:xRoadInstance>{client.member.instance}</id:xRoadInstance><id:memberClass>{client.member.member_class}</id:memberClass>
      <id:memberCode>{client.member.member_code}</id:memberCode><id:subsystemCode>{client.subsystem_code}</id:subsystemCode>
    </xrd:client>
    <xrd:service id:objectType="SERVICE">
      <id:xRoadInstance>{provider.member.instance}</id:xRoadInstance><id:memberClass>{provider.member.member_class}</id:memberClass>
      <id:memberCode>{provider.member.member_code}</id:memberCode><id:subsystemCode>{provider.subsystem_code}</id:subsystemCode>
      <id:serviceCode>{service.id.service_code}</id:serviceCode>{version}
    </xrd:service>
    <xrd:id>{uuid.uuid4()}</xrd:id>
    <xrd:userId>DE0000000001</xrd:userId>
    <xrd:protocolVersion>4.0</xrd:protocolVersion>
  </SOAP-ENV:Header>
  <SOAP-ENV:Body>{body}</SOAP-ENV:Body>
</SOAP-ENV:Envelope>
"""
    return client, envelope


@dataclass(frozen=True)
class Exchange:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def call(
    url: str, method: str, client: ClientId, body: Any = None, headers: dict[str, str] | None = None
) -> Exchange:
    data = json.dumps(body).encode() if body is not None else None
    all_headers = {"X-Road-Client": client.slash(), "Content-Type": "application/json", **(headers or {})}
    req = urllib.request.Request(url, data=data, method=method, headers=all_headers)  # noqa: S310 -- loopback
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310
            return Exchange(resp.status, dict(resp.headers), resp.read())
    except urllib.error.HTTPError as exc:
        return Exchange(exc.code, dict(exc.headers), exc.read())


def _name(layout: Layout, client: ClientId) -> str:
    member = layout.plan.member(client.member)
    sub = f" ({client.subsystem_code})" if isinstance(client, SubsystemId) else ""
    return member.name + sub


def _exchanges(layout: Layout) -> list[tuple[str, ClientId, ServicePlan, str, Any, str | None]]:
    """(label, client, service, path, body, expected X-Road error or None)."""
    services = {s.id: s for server in layout.plan.servers for s in server.services}
    anzeige_pb = _anzeige(
        "Anmeldung", "05774032", "Bäckerei Muster GmbH", "Backwaren, Herstellung", "10.71.0", _PERSON
    )
    anzeige_bi = _anzeige(
        "Ummeldung",
        "05711000",
        "Teutoburger Fahrradwerkstatt GmbH",
        "Reparatur von Fahrrädern",
        "95.29.0",
        {**_PERSON, "familienname": "Beispiel", "vorname": "Max"},
    )
    anzeige_de = _anzeige(
        "Abmeldung",
        "05774020",
        "Delbrücker Hofladen GmbH",
        "Einzelhandel mit Obst und Gemüse",
        "47.21.0",
        {**_PERSON, "familienname": "Probe", "vorname": "Anna"},
    )
    ga, st = services[GEWERBEANZEIGE], services[STATISTIK]
    return [
        (
            "Gewerbeanzeige (Anmeldung, Bäckerei Muster GmbH)",
            PADERBORN.subsystem("gewerbeamt"),
            ga,
            "/anzeigen",
            anzeige_pb,
            None,
        ),
        (
            "Statistikmeldung (reduced view of the same Anmeldung)",
            PADERBORN.subsystem("gewerbeamt"),
            st,
            "/meldungen",
            _statistik(anzeige_pb),
            None,
        ),
        (
            "Gewerbeanzeige (Ummeldung, Teutoburger Fahrradwerkstatt GmbH)",
            BIELEFELD.subsystem("gewerbeamt"),
            ga,
            "/anzeigen",
            anzeige_bi,
            None,
        ),
        (
            "Statistikmeldung (Abmeldung, Delbrücker Hofladen GmbH)",
            DELBRUECK.subsystem("gewerbeamt"),
            st,
            "/meldungen",
            _statistik(anzeige_de),
            None,
        ),
        (
            "Gewerbeanzeige from a system never granted access",
            KREIS_PB.subsystem("kreisverwaltung"),
            ga,
            "/anzeigen",
            anzeige_pb,
            "Server.ServerProxy.AccessDenied",
        ),
    ]


def _run_exchanges(layout: Layout) -> tuple[bool, str | None]:
    """Send the demo's exchanges; True when each ended as expected, and the first message id."""
    ok = True
    first: str | None = None
    for number, (label, client, service, tail, body, expected_error) in enumerate(_exchanges(layout), 1):
        consumer = layout.server_for_client(client)
        provider = next(s for s in layout.plan.servers if service in s.services)
        result = call(layout.client_url(consumer.slug) + rest_path(service.id, tail), "POST", client, body)
        print(f"[{number}] {_name(layout, client)} -> {_name(layout, service.id.provider)}: {label}")
        print(f"    via {consumer.id.slash()} -> {provider.id.slash()}")
        error = result.headers.get("X-Road-Error")
        if error:
            detail = result.json()
            verdict = "refused as expected" if error == expected_error else "FAILED"
            print(f"    {verdict}: HTTP {result.status} {error}: {detail.get('message')}")
            print(f"    correlation id {detail.get('detail')}")
            ok = ok and error == expected_error
        else:
            receipt = result.json()
            first = first or result.headers.get("X-Road-Id")
            print(
                f"    HTTP {result.status}, message {result.headers.get('X-Road-Id')}, "
                f"receipt {receipt.get('eingangsnummer')}"
            )
            ok = ok and expected_error is None and 200 <= result.status < 300
    return ok, first


def _look_up(layout: Layout) -> bool:
    """What an information system asks first: who receives a Gewerbeanzeige from Paderborn?"""
    from xweg.federation import _get_json

    area = PADERBORN.member_code
    url = f"{layout.client_url('paderborn')}/directory/v1/providers?service=gewerbeanzeige&area={area}"
    status, answer = _get_json(url)
    providers = answer.get("providers", []) if status == 200 and isinstance(answer, dict) else []
    print(
        f"Directory: who receives a Gewerbeanzeige for area {area} (Paderborn)? Asked at Paderborn's server:"
    )
    for entry in providers:
        servers = ", ".join(s["id"] for s in entry["servers"])
        print(f"    {entry['service']} ({entry['standard']}, area {entry['area']}) via {servers}")
    if providers:
        print(f"    from signed global configuration serial {answer['globalconf_serial']}\n")
    else:
        print(f"    no answer (HTTP {status})\n")
    return [entry["service"] for entry in providers] == [GEWERBEANZEIGE.slash()]


def _soap_meldeauskunft(layout: Layout, number: int) -> bool:
    """Delbrück's system asks Bielefeld's residents' register over SOAP, as a zeep client would.

    It builds itself from the WSDL its own security server fetches through getWsdl, and
    sends through both security servers like any X-Road SOAP client.
    """
    from zeep.exceptions import Error as ZeepError

    from adapters.soap.client import XRoadClient, XRoadClientError

    client = DELBRUECK.subsystem("meldewesen")
    consumer = layout.server_for_client(client)
    provider = layout.server_for_client(MELDEAUSKUNFT.provider)
    url = layout.client_url(consumer.slug)
    print(
        f"[{number}] {_name(layout, client)} -> {_name(layout, MELDEAUSKUNFT.provider)}: "
        "Meldeauskunft over SOAP, from a zeep client"
    )
    print(f"    via {consumer.id.slash()} -> {provider.id.slash()}; WSDL from getWsdl at {url}/wsdl?...")
    try:
        xroad = XRoadClient(
            wsdl_url(url, MELDEAUSKUNFT),
            url + "/",
            client=client,
            service=MELDEAUSKUNFT,
            user_id="DE0000000001",
        )
        answer = xroad.service.meldeauskunft(familienname="Muster", vornamen="Erika")
    except (XRoadClientError, ZeepError, OSError) as exc:
        print(f"    FAILED: {exc}")
        return False
    person = answer.body.person
    if answer.body.ergebnis != "treffer" or person is None:
        print(f"    FAILED: the register answered {answer.body.ergebnis}")
        return False
    print(
        f"    {answer.body.ergebnis}: {person.vornamen} {person.familienname}, born {person.geburtsdatum} "
        f"in {person.geburtsort}; message {answer.header.id}"
    )
    return True


def _export_evidence(layout: Layout, message_id: str) -> bool:
    """What an auditor does: take one exchange's evidence and verify it with only the anchor."""
    from gateway.messagelog.evidence import build_evidence
    from gateway.messagelog.store import MessageLogStore
    from trust.anchor import load_anchor
    from trust.evidence import EvidenceInvalid, verify_evidence

    provider = layout.server_for_client(GEWERBEANZEIGE.provider)
    with MessageLogStore.open_readonly(layout.message_log(provider.slug)) as store:
        container = build_evidence(store, message_id, now=dt.datetime.now(dt.UTC))
    target = layout.root / "evidence" / f"{message_id}.zip"
    target.parent.mkdir(exist_ok=True)
    target.write_bytes(container)
    print(f"\nEvidence of message {message_id} from {provider.name}'s log: {target}")
    try:
        report = verify_evidence(target.read_bytes(), load_anchor(layout.anchor))
    except EvidenceInvalid as exc:
        print(f"  NOT VERIFIED: {exc}")
        return False
    print("  verified offline with nothing but the configuration anchor:")
    print(textwrap.fill(report.describe(), width=100, initial_indent="  ", subsequent_indent="  "))
    return True


def _wait_for_timestamps(layout: Layout, timeout_s: float = 60.0) -> bool:
    """Wait until every security server's log is covered by a timestamped checkpoint."""
    from xweg.federation import _get_json

    deadline = time.monotonic() + timeout_s
    waiting = {s.slug for s in layout.plan.servers}
    while waiting and time.monotonic() < deadline:
        for slug in sorted(waiting):
            status, body = _get_json(layout.client_url(slug) + "/readyz")
            if status == 200 and isinstance(body, dict) and body.get("untimestamped_records") == 0:
                waiting.discard(slug)
        time.sleep(0.5)
    for slug in sorted(waiting):
        print(f"  {layout.plan.server(slug).name}: records still without a timestamp after {timeout_s:.0f} s")
    return not waiting


def _verify_logs(layout: Layout) -> bool:
    from gateway.messagelog.verify import verify_log_file

    ok = True
    print(
        "\nMessage logs, verified with nothing but the configuration anchor (chain, signatures, timestamps):"
    )
    for server in layout.plan.servers:
        path = layout.message_log(server.slug)
        # As an auditor would: trust only what the configuration anchor vouches for.
        trust = trust_from_anchor(path, load_anchor(layout.anchor))
        report = verify_log_file(
            path,
            signature_check(trust.certificates),
            tsa_certificates=trust.tsas,
            roots=trust.certificates.roots,
            intermediates=trust.certificates.intermediates,
            check_checkpoint_signature=checkpoint_signature_check(trust.certificates),
        )
        if report.first_error is None:
            stamped = report.to_dict().get("timestamped_records", 0)
            print(f"  {server.name:28} intact, {report.records} records, {stamped} timestamped   {path}")
        else:
            ok = False
            print(f"  {server.name:28} NOT INTACT: {report.first_error.reason}")
    return ok


def _show_traffic(layout: Layout) -> bool:
    """Each security server's exchanges as its ``/metrics`` count them (over HTTPS with its
    internal TLS certificate, read with Prometheus's own text parser)."""
    from prometheus_client.parser import text_string_to_metric_families

    print("\nWhat each server's administrator sees in /metrics (management listener):")
    ok = True
    for server in layout.plan.servers:
        url = layout.management_url(server.slug) + "/metrics"
        context = ssl.create_default_context(cafile=str(layout.internal_tls_certificate(server.slug)))
        try:
            with urllib.request.urlopen(url, timeout=10, context=context) as response:  # noqa: S310 -- loopback
                text = response.read().decode("utf-8")
        except (OSError, urllib.error.URLError) as exc:
            print(f"  {server.name:28} no metrics: {exc}")
            ok = False
            continue
        counts: dict[tuple[str, bool], float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "xweg_exchanges_total":
                    key = (sample.labels["role"], sample.labels["error_origin"] == "")
                    counts[key] = counts.get(key, 0.0) + sample.value
        parts = [
            f"{role}: {counts.get((role, True), 0):.0f} ok, "
            f"{counts.get((role, False), 0):.0f} refused or failed"
            for role in ("consumer", "provider")
            if (role, True) in counts or (role, False) in counts
        ]
        print(f"  {server.name:28} {'; '.join(parts) or 'no exchanges yet'}   {url}")
    return ok


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run_demo(data: Path, *, once: bool, database_url: str | None = None) -> int:
    # SIGTERM (e.g. from a supervisor or `timeout`) stops the federation as Ctrl-C does.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    print(f"Preparing the OWL federation under {data} ...")
    try:
        layout = prepare(data, OWL, database_url=database_url)
    except FederationError as exc:
        print(f"Cannot prepare the federation: {exc}")
        return 1
    if database_url is not None:
        shown = redact_url(database_url)
        print(f"  in PostgreSQL: the registry in {shown}, each security server in a database beside it")
    federation = RunningFederation(layout, report=print)
    try:
        print("Starting the trust services, the registry and the demo backends as separate processes;")
        print("each security server registers through the registry's workflow, then starts:")
        federation.start()
        (layout.root / "federation.json").write_text(
            json.dumps(federation.describe(), indent=2, ensure_ascii=False)
        )
        print(f"All ready. Registry {layout.registry_url}; described in {layout.root / 'federation.json'}\n")
        found = _look_up(layout)
        exchanged, first_message = _run_exchanges(layout)
        soap = _soap_meldeauskunft(layout, len(_exchanges(layout)) + 1)
        exchanged = exchanged and found and soap and _show_traffic(layout)
        interval = layout.plan.timestamp_interval_s
        tsa = layout.tsa_url
        print(f"\nWaiting for the next timestamp batch (every {interval:.0f} s here; TSA {tsa}) ...")
        stamped = _wait_for_timestamps(layout)
        verified = _verify_logs(layout) and stamped
        if first_message is not None and stamped:
            verified = _export_evidence(layout, first_message) and verified
        if once:
            print("\nDemo " + ("succeeded." if exchanged and verified else "FAILED."))
            return 0 if exchanged and verified else 1
        example = layout.client_url("paderborn") + rest_path(GEWERBEANZEIGE, "/anzeigen")
        print("\nThe federation keeps running. Call a service yourself, e.g. Paderborn's Gewerbeamt asking")
        print("the Bezirksregierung's receiver for what it has received so far:\n")
        print(f"  curl -i -H 'X-Road-Client: NRW/MUN/05774032/gewerbeamt' {example}\n")
        print("Audit a log:  xweg audit verify " + str(layout.message_log("paderborn")))
        print(
            f"Find a service:  xweg directory providers --anchor {layout.anchor} "
            "--service gewerbeanzeige --area 05774032"
        )
        evidence = layout.root / "evidence"
        print(f"Verify evidence offline:  xweg audit verify {evidence}/<id>.zip --anchor {layout.anchor}")
        config = layout.server_config("bielefeld")
        print(
            "Administer a server:  TOKEN=$(xweg gateway token issue --role observer --subject you "
            f"--config {config} | head -1)"
        )
        certificate = layout.internal_tls_certificate("bielefeld")
        print(
            f'  curl --cacert {certificate} -H "Authorization: Bearer $TOKEN" '
            f"{layout.management_url('bielefeld')}/opmon/health"
        )
        print(f"  xweg gateway service list --config {config}")
        print("Press Ctrl-C to stop.")
        try:
            while all(p.alive() for p in federation.processes.values()):
                time.sleep(1)
            print("A component stopped; shutting down.")
            return 1
        except KeyboardInterrupt:
            print("\nStopping ...")
            return 0
    except FederationError as exc:
        print(f"The federation did not start: {exc}")
        return 1
    except KeyboardInterrupt:
        print("\nStopping ...")
        return 130
    finally:
        federation.stop()
