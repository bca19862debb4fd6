"""``xweg federation prepare|enrol``: the OWL federation of ``xweg demo``, one step at a time.

``xweg demo`` prepares the federation and runs every component on loopback in one go.
A deployment that runs each component on its own (``deploy/compose``: a container
each) takes the steps apart:

* ``xweg federation prepare --data DIR --network compose`` makes every key, certificate
  and configuration file under DIR, with the listeners on every address and each
  component named by its compose service, and sets up the registry's store
  (``--registry-database-url``, default SQLite under DIR).  Run it again at will: what
  exists is kept, as with ``xweg demo``.  It prints each component's command.
* ``xweg federation enrol --data DIR``, once the registry and the trust services run,
  registers every security server and its clients through the registry's workflow and
  waits until the registry publishes them; then the security servers can start.

Exit status: 0 done; 1 failed, with one line on stderr; 2 for a bad command line.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["NETWORKS", "add_federation_commands", "run_federation_command"]

#: The values of :class:`xweg.federation.Network` (not imported here: parsing stays light).
NETWORKS = ("loopback", "compose")


def add_federation_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``federation prepare`` and ``federation enrol`` to ``xweg``'s subparsers."""
    federation = sub.add_parser(
        "federation", help="prepare the OWL demo federation's files for a deployment, and enrol its servers"
    )
    actions = federation.add_subparsers(dest="action", required=True)
    prepare = actions.add_parser(
        "prepare", help="make or reuse every key, certificate and configuration file"
    )
    prepare.add_argument("--data", type=Path, required=True, help="the federation's folder")
    prepare.add_argument(
        "--network",
        choices=NETWORKS,
        default="loopback",
        help="loopback (as xweg demo) or compose (a container per component, named by its service)",
    )
    prepare.add_argument(
        "--registry-database-url",
        help="the registry's store, e.g. postgresql://xweg@postgres/registry (password: PGPASSWORD);"
        " default: SQLite in DATA/registry",
    )
    enrol = actions.add_parser(
        "enrol", help="register every security server with the running registry; wait until it is published"
    )
    enrol.add_argument("--data", type=Path, required=True, help="the folder prepare made")
    enrol.add_argument("--timeout", type=float, default=120.0, help="seconds to wait (default 120)")


def _prepare(args: argparse.Namespace) -> int:
    from xweg.federation import OWL, Network, component_commands, prepare

    layout = prepare(
        args.data, OWL, network=Network(args.network), registry_database_url=args.registry_database_url
    )
    print(f"The OWL federation is prepared in {layout.root} for the {layout.network.value} network:")
    for component, command in component_commands(layout).items():
        if component in layout.ports:
            listening = layout.address(component)
        else:
            listening = ", ".join(
                f"{listener} {layout.address(f'{component}.{listener}')}"
                for listener in ("client", "peer", "management")
            )
        print(f"  {component}: {listening}\n      xweg {' '.join(command)}")
    return 0


def _enrol(args: argparse.Namespace) -> int:
    from xweg.enrolment import enrol
    from xweg.federation import OWL, open_layout

    layout = open_layout(args.data, OWL)
    print(f"Registering the security servers with the registry at {layout.registry_url}:")
    enrol(layout, report=print, timeout_s=args.timeout)
    print("Every security server and client is registered and published.")
    return 0


def run_federation_command(args: argparse.Namespace) -> int:
    from registry.store import RegistryError
    from xweg.federation import FederationError

    try:
        return _prepare(args) if args.action == "prepare" else _enrol(args)
    except (FederationError, RegistryError, OSError, ValueError) as exc:
        print(f"xweg federation {args.action}: {exc}", file=sys.stderr)
        return 1
