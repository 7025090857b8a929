"""Benchmarks of the health monitor: overhead per step, and recall / false alarms.

``python -m benchmarks.monitor.overhead`` and ``python -m benchmarks.monitor.recall`` (from the
repository root) write JSON and Markdown reports to ``benchmarks/results/monitor/``.
"""
