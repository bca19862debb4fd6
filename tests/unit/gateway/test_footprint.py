"""What a security server holds in memory for the libraries it imports.

Each library imported stays for the life of the process: zeep and ``requests`` (the SOAP
client for information systems, and reading WSDL documents) and Alembic (migrations) cost
several MB each and have nothing to do on the message path, so importing the server,
and opening a server configuration that is up to date, must not load them.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from gateway.serverconf.store import ServerConfStore

_HEAVY = ("zeep", "requests", "alembic")


def _loaded_after(code: str) -> list[str]:
    """The heavy top-level packages in ``sys.modules`` after running ``code`` in a fresh interpreter."""
    loaded = f"{{m.split('.')[0] for m in sys.modules}} & {set(_HEAVY)!r}"
    script = f"import sys\n{code}\nprint(*sorted({loaded}))\n"
    done = subprocess.run(
        [sys.executable, "-c", script], check=True, capture_output=True, text=True, timeout=60
    )
    return done.stdout.split()


def test_importing_the_security_server_loads_no_zeep_requests_or_alembic() -> None:
    assert _loaded_after("import gateway.server") == []


def test_opening_an_up_to_date_server_configuration_loads_no_alembic(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'serverconf.db'}"
    ServerConfStore.open(url).close()  # created and migrated here, with Alembic
    code = (
        "import gateway.server\n"
        "from gateway.serverconf.store import ServerConfStore\n"
        f"with ServerConfStore.open({url!r}) as store:\n"
        "    store.snapshot()\n"
    )
    assert _loaded_after(code) == []
