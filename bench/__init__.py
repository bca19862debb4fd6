"""Benchmarks of xweg, run as ``python -m bench <name> [options]``.

Each benchmark is a module that offers a :class:`Benchmark`: a name, a one-line help,
a function adding its options to an argparse parser and one running it.  Add a new
one to :func:`benchmarks`; the command line lists them all.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Benchmark", "benchmarks", "main"]


@dataclass(frozen=True)
class Benchmark:
    """One ``python -m bench`` sub-command."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def benchmarks() -> tuple[Benchmark, ...]:
    """Every benchmark, in the order the usage lists them (imported only when asked for)."""
    from bench import verify

    return (verify.BENCHMARK,)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description="xweg benchmarks")
    sub = parser.add_subparsers(dest="benchmark", metavar="BENCHMARK")
    for benchmark in benchmarks():
        child = sub.add_parser(benchmark.name, help=benchmark.help, description=benchmark.help)
        benchmark.add_arguments(child)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark named in ``argv``; without one, print the usage and return 2."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.benchmark is None:
        parser.print_help()
        return 2
    chosen = next(b for b in benchmarks() if b.name == args.benchmark)
    return chosen.run(args)
