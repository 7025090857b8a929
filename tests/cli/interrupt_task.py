"""Entry point for the CLI tests: the MNIST example task, plus a real SIGINT sent to this
process when batch number $HPT_TEST_INTERRUPT_AT (1-based, counted across epochs) is loaded
(under torchrun only on rank $HPT_TEST_INTERRUPT_RANK, when set).
Copied next to the test's config together with examples/mnist_task.py."""
from __future__ import annotations

import os
import signal

from mnist_task import build as build_mnist


def build(**kwargs):
    task = build_mnist(**kwargs)
    at = int(os.environ.get("HPT_TEST_INTERRUPT_AT", "0"))
    only_rank = os.environ.get("HPT_TEST_INTERRUPT_RANK")
    if only_rank is not None and os.environ.get("RANK") != only_rank:
        at = 0
    if at:
        collate = task.train.collate_fn
        seen = {"n": 0}

        def counting_collate(batch):
            seen["n"] += 1
            if seen["n"] == at:
                os.kill(os.getpid(), signal.SIGINT)
            return collate(batch)
        task.train.collate_fn = counting_collate
    return task
