"""Fault-injection campaign of hybrid-predict-trainer: crashes, numeric faults, full disks,
fuzzed inputs and crafted checkpoints, each injected into real training and checked.

``python -m benchmarks.faults [--out DIR] [--kills N] [--quick]`` runs the whole campaign and
writes ``faults.json`` and ``faults.md`` (default folder ``benchmarks/results/faults/``);
``tests/faults`` runs a reduced version of the same scenarios in the test suite.
``docs/reliability.md`` states the guarantees and how each one is measured.
"""
