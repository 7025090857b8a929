"""Benchmark suite of hybrid-predict-trainer: time to a tuned-AdamW target on real data.

Run ``python -m benchmarks --quick`` for a smoke run, ``python -m benchmarks`` for the full
suite; ``benchmarks/README.md`` explains the method and the report. Importing this package
imports nothing heavy, so the command line can set up the environment first.
"""
