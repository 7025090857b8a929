"""``hpt bench ...``: the benchmark suite of the repository's ``benchmarks/`` package.

Why forward instead of re-implementing: the suite (workloads, tuned baselines, statistics)
lives in the repository, not in the installed library. ``hpt bench`` imports it from the
current directory and passes every argument through unchanged, so ``hpt bench --help``
shows the suite's own options (``--quick``, ``--workloads``, ...).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import typer


def bench(ctx: typer.Context) -> None:
    """Run the repository's benchmark suite; all options go to python -m benchmarks.

    Run it from the repository root. Try: hpt bench --help, hpt bench --quick.
    """
    args = list(ctx.args)
    root = Path.cwd()
    if not (root / "benchmarks" / "__init__.py").is_file() or not (
            root / "benchmarks" / "run.py").is_file():
        typer.echo("error: hpt bench runs the repository's benchmarks/ package; run it from the "
                   "repository root (the folder that contains benchmarks/)", err=True)
        raise typer.Exit(2)
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(root), os.environ.get("PYTHONPATH")) if p)
    from benchmarks.run import main as bench_main

    try:
        code = bench_main(args)
    except SystemExit as exc:           # argparse: --help, or a bad option
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    raise typer.Exit(int(code or 0))
