"""``python -m benchmarks.faults``: run the fault campaign, write faults.json and faults.md.

    python -m benchmarks.faults                      # full campaign (a few minutes on 2 cores)
    python -m benchmarks.faults --quick              # smoke run (about a minute)
    python -m benchmarks.faults --out DIR --kills 30 --fuzz-examples 2000 --real-fs

``--real-fs`` adds a really full and a really read-only tmpfs (root and ``mount`` only).
The exit status is 0 when every fault was survived and nothing in the fuzzing was unhandled.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "results" / "faults"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.faults",
                                description="Fault-injection campaign of hybrid-predict-trainer.")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT,
                   help="results folder (default benchmarks/results/faults)")
    p.add_argument("--kills", type=int, default=20,
                   help="SIGKILLs that must land inside a save (default 20)")
    p.add_argument("--kills-anywhere", type=int, default=5,
                   help="SIGKILLs at random moments of training (default 5)")
    p.add_argument("--fuzz-examples", type=int, default=1000,
                   help="Hypothesis examples per fuzz target (default 1000)")
    p.add_argument("--quick", action="store_true",
                   help="3 + 1 kills, 100 fuzz examples, one fault position")
    p.add_argument("--real-fs", action="store_true",
                   help="also use real full / read-only tmpfs mounts (needs root)")
    p.add_argument("--only", help="comma-separated subset of: crash, numeric, disk, fuzz, "
                                  "security")
    args = p.parse_args(argv)
    if args.quick:
        args.kills, args.kills_anywhere, args.fuzz_examples = 3, 1, 100
    sections = set((args.only or "crash,numeric,disk,fuzz,security").split(","))

    import torch
    torch.set_num_threads(1)
    from . import crash, disk, fuzz, numeric, report, security
    from .workload import Workload

    t0 = time.time()
    res: dict = {}
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="hpt-faults-") as tmp:
        work = Path(tmp).resolve()
        if "crash" in sections:
            print("crash: SIGKILL during save and mid-training ...", flush=True)
            res["crash"] = crash.campaign(work / "crash", kills_in_save=args.kills,
                                          kills_anywhere=args.kills_anywhere,
                                          steps=60 if args.quick else 400)
        if "numeric" in sections:
            print("numeric: NaN/Inf, learning-rate spike, loss explosion ...", flush=True)
            positions = ((24, 35),) if args.quick else ((24, 35), (27, 60), (105, 90))
            res["numeric"] = numeric.campaign(Workload(steps=150), positions)
        if "disk" in sections:
            print("disk: full, read-only, bad paths ...", flush=True)
            res["disk"] = disk.campaign(work / "disk", real_fs=args.real_fs)
        if "fuzz" in sections:
            print(f"fuzz: {args.fuzz_examples} examples per target ...", flush=True)
            res["fuzz"] = fuzz.campaign(args.fuzz_examples, work / "fuzz")
        if "security" in sections:
            print("security: crafted checkpoints, file modes, network ...", flush=True)
            corpus = fuzz.make_corpus(work / "sec-corpus", steps=6)
            res["security"] = {
                "crafted": security.check_crafted(work / "crafted", corpus.data,
                                                  verify_live=not args.quick),
                "modes": [security.check_modes(work / "modes", u) for u in (0o022, 0o077, 0o000)],
                "static_scan": security.static_network_scan(),
                "runtime": security.runtime_without_network(work / "net"),
            }
    res["meta"] = {"command": "python -m benchmarks.faults " + " ".join(argv or sys.argv[1:]),
                   "machine": f"Python {platform.python_version()}, torch "
                              f"{__import__('torch').__version__}, {os.cpu_count()} CPUs",
                   "wall_s": time.time() - t0}
    # scratch paths in messages: shown relative to the campaign's scratch folder
    res = json.loads(json.dumps(res, default=str).replace(str(work), "$SCRATCH"))
    res["figures"] = report.figures(res)
    (args.out / "faults.json").write_text(json.dumps(res, indent=1, default=str) + "\n")
    (args.out / "faults.md").write_text(report.markdown(res) + "\n")
    f = res["figures"]
    print(json.dumps(f, indent=1))
    print(f"wrote {args.out / 'faults.json'} and {args.out / 'faults.md'}")
    ok = (f["faults_injected"] == f["faults_survived"] and f["fuzz_unhandled"] == 0
          and f["crafted_refused"] == f["crafted_total"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
