"""The arguments of every command that works on a security server's configuration.

``--database-url`` is there wherever ``--config`` is: a server whose PostgreSQL database
is given on the command line (``xweg gateway serve --database-url``, as a container's
entry point may) keeps its configuration store, global configuration and token keys in
that database, and a command reading them from the file's settings alone would work on
other ones: issue a token no replica accepts, or find no global configuration.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.config import GatewayConfig

__all__ = ["add_gateway_config_arguments", "load_gateway_config"]


def add_gateway_config_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--config`` (required) and ``--database-url`` to ``parser``."""
    parser.add_argument("--config", type=Path, required=True, help="the security server's configuration")
    parser.add_argument(
        "--database-url",
        help="the PostgreSQL database replicas of this server share (postgresql://...);"
        " replaces the configuration file's database_url",
    )


def load_gateway_config(args: argparse.Namespace) -> GatewayConfig:
    """The configuration ``args`` name; raises :class:`gateway.config.ConfigError`."""
    from gateway.config import GatewayConfig

    return GatewayConfig.load(args.config, database_url=args.database_url)
