"""The systemd units in deploy/systemd: they start what the command line offers, stop in time,
and keep the exposure systemd itself rates low."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from gateway.config import Limits
from xweg.cli import _parser

UNITS = Path(__file__).resolve().parents[3] / "deploy" / "systemd"
#: systemd-analyze's scale: 0 to 10, below 2 is "OK" (and well below the 8.5 of a unit
#: that sets only the basics).
MAX_EXPOSURE = 2.0


def unit_files() -> list[Path]:
    units = sorted(UNITS.glob("*.service"))
    assert {unit.name for unit in units} >= {"xweg-gateway@.service", "xweg-registry.service"}
    return units


def directives(unit: Path) -> dict[str, list[str]]:
    """Every ``Key=value`` of the unit, values in order (systemd allows a key several times)."""
    found: dict[str, list[str]] = {}
    for line in unit.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        found.setdefault(key, []).append(value)
    return found


@pytest.mark.parametrize("unit", unit_files(), ids=lambda unit: unit.name)
def test_the_unit_starts_a_command_xweg_has(unit: Path) -> None:
    (exec_start,) = directives(unit)["ExecStart"]
    program, *args = shlex.split(exec_start.replace("%i", "demo"))
    assert program == "/opt/xweg/.venv/bin/xweg"
    parsed = _parser().parse_args(args)
    assert parsed.command in ("gateway", "registry") and parsed.action == "serve"
    assert str(parsed.config).startswith("/etc/xweg/")


@pytest.mark.parametrize("unit", unit_files(), ids=lambda unit: unit.name)
def test_the_unit_runs_as_its_own_user_with_private_files(unit: Path) -> None:
    found = directives(unit)
    assert found["User"] == ["xweg"] and found["Group"] == ["xweg"]
    assert found["UMask"] == ["0077"]
    assert found["NoNewPrivileges"] == ["yes"]
    assert found["ProtectSystem"] == ["strict"]
    assert found["CapabilityBoundingSet"] == [""]
    # The only place it may write is its state directory under /var/lib/xweg.
    (state,) = found["StateDirectory"]
    assert state.startswith("xweg/")


def test_the_security_server_may_finish_exchanges_in_flight_before_it_is_killed() -> None:
    found = directives(UNITS / "xweg-gateway@.service")
    assert found["KillSignal"] == ["SIGTERM"]
    (timeout,) = found["TimeoutStopSec"]
    assert float(timeout) > Limits().shutdown_timeout_s + 10


def _systemd_analyze_offline() -> str | None:
    program = shutil.which("systemd-analyze")
    if program is None:
        return None
    done = subprocess.run([program, "--version"], capture_output=True, text=True, check=False)
    match = re.match(r"systemd (\d+)", done.stdout)
    # --offline arrived in systemd 250.
    return program if match and int(match.group(1)) >= 250 else None


@pytest.mark.skipif(
    _systemd_analyze_offline() is None,
    reason="needs systemd-analyze 250 or newer (Debian 12's systemd package) for `security --offline`",
)
@pytest.mark.parametrize("unit", unit_files(), ids=lambda unit: unit.name)
def test_systemd_rates_the_unit_ok(unit: Path, tmp_path: Path) -> None:
    program = _systemd_analyze_offline()
    assert program is not None
    # A template is rated as one of its instances.
    instance = tmp_path / unit.name.replace("@.", "@demo.")
    instance.write_text(unit.read_text())
    done = subprocess.run(
        [program, "security", "--offline=true", "--no-pager", str(instance)],
        capture_output=True,
        text=True,
        check=False,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", done.stdout)
    assert match, done.stdout + done.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE, done.stdout
