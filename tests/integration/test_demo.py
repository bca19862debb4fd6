"""``xweg demo --once``: the whole OWL federation, its exchanges, and its verified logs."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from tests.databases import new_postgres_database

pytestmark = pytest.mark.integration


def _xweg(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "xweg", *args], capture_output=True, text=True, timeout=timeout
    )


def test_demo_once_exchanges_and_leaves_verifiable_logs(tmp_path: Path) -> None:
    data = tmp_path / "demo"
    run = _xweg("demo", "--once", "--data", str(data))
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Paderborn (gewerbeamt) -> Bezirksregierung Detmold (arbeitsschutz)" in run.stdout
    assert "refused as expected: HTTP 500 Server.ServerProxy.AccessDenied" in run.stdout
    # SOAP from a zeep client built from the WSDL that getWsdl delivered.
    assert (
        "Stadt Delbrück (meldewesen) -> Stadt Bielefeld (meldewesen): Meldeauskunft over SOAP" in run.stdout
    )
    assert "treffer: Erika Maria Muster, born 1985-04-12 in Paderborn; message " in run.stdout
    # Registered through the workflow: every server asked, the officer approved.
    assert "Stadt Paderborn: NRW/MUN/05774032/ss1 asked to register its auth certificate" in run.stdout
    assert "client NRW/MUN/05774/kreisverwaltung (request " in run.stdout
    assert "signed by NRW/MUN/05774), approved" in run.stdout
    assert (
        "NRW/GOV/057/arbeitsschutz/gewerbeanzeige/v1 (XGewerbeanzeige 2.2, area 057) via NRW/GOV/057/ss1"
        in (run.stdout)
    )

    # Each server's /metrics, read over HTTPS and with Prometheus's own parser.
    assert "What each server's administrator sees in /metrics" in run.stdout
    assert re.search(r"Bezirksregierung Detmold +provider: [0-9]+ ok, 1 refused or failed", run.stdout)

    described = json.loads((data / "federation.json").read_text())
    assert described["instance"] == "NRW"
    assert described["ocsp_url"].startswith("http://127.0.0.1:")
    assert described["tsa_url"].startswith("http://127.0.0.1:")
    assert Path(described["anchor"]).exists()
    servers = {s["id"]: s for s in described["security_servers"]}
    assert {"NRW/MUN/05774032/ss1", "NRW/MUN/05711000/ss1", "NRW/GOV/057/ss1"} <= set(servers)
    assert "NRW/MUN/05774/kreisverwaltung" in servers["NRW/MUN/05774032/ss1"]["clients"]
    for server in servers.values():
        assert server["management_url"].startswith("https://127.0.0.1:")
        assert server["metrics_url"] == server["management_url"] + "/metrics"
        assert Path(server["internal_tls_certificate"]).exists()
    service = next(s for s in described["services"] if s["id"] == "NRW/GOV/057/arbeitsschutz/gewerbeanzeige")
    assert service["protocol"] == "rest"
    assert service["provider_security_server"] == "NRW/GOV/057/ss1"
    assert service["example_request"]["method"] == "POST"
    assert service["example_request"]["path"].startswith("/r1/NRW/GOV/057/arbeitsschutz/gewerbeanzeige/")
    # The SOAP services, each with its WSDL address and an example envelope.
    for code in ("meldeauskunft", "rueckmeldung"):
        soap = next(s for s in described["services"] if s["id"] == f"NRW/MUN/05711000/meldewesen/{code}")
        assert (soap["protocol"], soap["provider_security_server"]) == ("soap", "NRW/MUN/05711000/ss1")
        assert "/wsdl?xRoadInstance=NRW&memberClass=MUN&memberCode=05711000" in soap["wsdl_url"]
        example = soap["example_request"]
        assert example["client"] == "NRW/MUN/05774020/meldewesen"
        assert f"<id:serviceCode>{code}</id:serviceCode>" in example["envelope"]

    for server in described["security_servers"]:
        check = _xweg("audit", "verify", server["message_log"], "--json")
        assert check.returncode == 0, check.stdout + check.stderr
        summary = json.loads(check.stdout)
        assert summary["records"] >= 2
        # The demo ends with every record covered by a verified timestamp.
        assert summary["timestamped_records"] == summary["records"]
        assert summary["checkpoints"] >= 1

    # One stored byte changed in Paderborn's log: the auditor's verification fails.
    log = Path(servers["NRW/MUN/05774032/ss1"]["message_log"])
    con = sqlite3.connect(log)
    seq, signature = con.execute("SELECT seq, signature FROM records ORDER BY seq DESC LIMIT 1").fetchone()
    changed = signature[:-5] + ("A" if signature[-5] != "A" else "B") + signature[-4:]
    with con:
        con.execute("UPDATE records SET signature = ? WHERE seq = ?", (changed, seq))
    con.close()
    bad = _xweg("audit", "verify", str(log))
    assert bad.returncode == 1
    assert f"First bad record: {seq}" in bad.stdout

    # A second run reuses the keys and state under the same folder.
    ca_before = (data / "trust" / "ca" / "root.pem").read_bytes()
    (data / "servers" / "paderborn" / "data" / "messagelog.db").unlink()  # the tampered log goes
    for suffix in ("-wal", "-shm"):
        (data / "servers" / "paderborn" / "data" / f"messagelog.db{suffix}").unlink(missing_ok=True)
    again = _xweg("demo", "--once", "--data", str(data))
    assert again.returncode == 0, again.stdout + again.stderr
    assert (data / "trust" / "ca" / "root.pem").read_bytes() == ca_before
    # The registry's store persisted: nothing is registered twice.
    assert "asked to register" not in again.stdout
    assert again.stdout.count("is registered (kept from the last run)") == 5


def test_demo_once_on_postgresql(tmp_path: Path) -> None:
    """``xweg demo --once --database-url``: the registry in the given database, each security
    server in one of its own beside it, and nothing of theirs left in SQLite files."""
    base = new_postgres_database("xweg_demo")
    data = tmp_path / "demo"
    run = _xweg("demo", "--once", "--data", str(data), "--database-url", base)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "in PostgreSQL: the registry in " + base in run.stdout
    assert "Demo succeeded." in run.stdout
    for slug in ("nrw", "detmold", "paderborn", "delbrueck", "bielefeld"):
        assert re.search(
            rf"intact, [1-9][0-9]* records, .* timestamped +shard main of {base}_{slug}\n", run.stdout
        )
        folder = data / "servers" / slug / "data"
        assert not {"messagelog.db", "opmon.db", "serverconf.db"} & {p.name for p in folder.iterdir()}
        # Each server's database holds its log's shard, its monitoring and its configuration.
        with psycopg.connect(f"{base}_{slug}") as connection:
            schemas = {
                row[0]
                for row in connection.execute(
                    "SELECT DISTINCT table_schema FROM information_schema.tables"
                    " WHERE table_schema IN ('messagelog_main', 'opmon', 'public')"
                )
            }
            services = connection.execute("SELECT count(*) FROM services").fetchone()
        assert schemas == {"messagelog_main", "opmon", "public"}
        assert services is not None
    assert not (data / "registry" / "registry.db").exists()
    with psycopg.connect(base) as connection:
        members = connection.execute("SELECT count(*) FROM members").fetchone()
    assert members is not None and members[0] >= 5

    # An auditor verifies a server's every shard with the anchor alone.
    anchor = data / "anchor.json"
    audit = _xweg("audit", "verify", f"{base}_detmold", "--anchor", str(anchor), "--json")
    assert audit.returncode == 0, audit.stdout + audit.stderr
    report = json.loads(audit.stdout)
    assert report["intact"] is True and list(report["shards"]) == ["main"]
    assert report["shards"]["main"]["records"] >= 4
