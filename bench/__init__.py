"""Benchmarks of xweg.

``python -m bench [--quick] [--out PATH]`` runs the side-by-side benchmark of
:mod:`bench.chain` (what ``make bench`` runs); ``python -m bench <name> [options]`` runs
one of the others.  Each of those is a module that offers a :class:`Benchmark`: a
name, a one-line help, a function adding its options to an argparse parser and one
running it.  Add a new one to :func:`benchmarks`; the command line lists them all.
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
    from bench import chain

    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="xweg benchmarks; without a BENCHMARK, xweg's chain beside a direct call and nginx",
    )
    chain.add_arguments(parser)
    sub = parser.add_subparsers(dest="benchmark", metavar="BENCHMARK")
    for benchmark in benchmarks():
        child = sub.add_parser(benchmark.name, help=benchmark.help, description=benchmark.help)
        benchmark.add_arguments(child)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark named in ``argv``; without one, the side-by-side benchmark."""
    args = _parser().parse_args(argv)
    if args.benchmark is None:
        from bench import chain

        return chain.run(args)
    chosen = next(b for b in benchmarks() if b.name == args.benchmark)
    return chosen.run(args)
