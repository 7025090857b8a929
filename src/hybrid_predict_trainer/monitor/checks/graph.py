"""``graph-across-steps``: a step's backward reaches the autograd graph of an earlier step (D).

How: on sampled steps (the first two, then every ``graph_every``) the loss graph is walked
(at most ``graph_max_nodes`` nodes) after its backward, and a pre-hook is put on each node.
The hooked nodes are kept until the next walk, so a walk that meets one of them has found a
graph that reaches an earlier step. Before that walk, a hook may fire: a later backward reached
the node, so a tensor was carried across the step boundary with its graph (even where backward
succeeds, the carried value is stale: it was computed from parameters changed since).

* If the node's saved tensors were already freed, the next thing PyTorch does is fail with
  "Trying to backward through the graph a second time"; the hook fires first, so the finding
  (or, under ``policy="raise"``, the HealthError) comes before that error.
* Otherwise (tensors retained with ``retain_graph=True``, or none saved) it is reported when a
  second, different backward pass runs through the node: the graph, memory and time per step
  then grow without bound. One pass is not enough, because a loop that calls ``monitor.step``
  before ``backward`` legitimately runs each hooked node once.

Cost: the walk and the hooks cost one to two microseconds per node, on sampled steps only;
the node's saved tensors are only inspected when a hook fires, and hooks of healthy runs never
fire. A hooked graph's nodes (not its freed buffers) live until the next walk.
"""
from __future__ import annotations

from typing import Any

import torch

from .base import Check, StepContext

_FREED, _RETAINED = "freed", "retained"


_SAVED_ATTRS: dict[type, tuple[str, ...]] = {}


def saved_state(node: Any) -> str | None:
    """'freed' if a saved tensor can no longer be unpacked (released by a backward, or changed
    in place since), 'retained' if it still holds usable ones, None if it saved no tensors.
    The first saved tensor decides; attribute names are cached per node type."""
    kind = type(node)
    attrs = _SAVED_ATTRS.get(kind)
    if attrs is None:
        attrs = _SAVED_ATTRS[kind] = tuple(a for a in dir(kind) if a.startswith("_saved_"))
    for attr in attrs:
        try:
            value = getattr(node, attr)
        except RuntimeError:
            return _FREED
        if isinstance(value, torch.Tensor) or (
                isinstance(value, (tuple, list)) and any(isinstance(v, torch.Tensor)
                                                         for v in value)):
            return _RETAINED
    return None


class GraphCheck(Check):
    """Walks sampled loss graphs and hooks their nodes (see the module docstring)."""

    name = "graph"
    codes = ("graph-across-steps",)
    every = "graph_every"
    first_steps = 2

    def __init__(self) -> None:
        super().__init__()
        self._handles: list[Any] = []
        self._nodes: dict[int, Any] = {}   # hooked nodes, kept alive so their ids stay unique
        self._tasks: dict[int, int] = {}
        self._armed_step = 0
        self._done = False
        self._no_graph = 0   # sampled steps whose loss had no graph to walk

    def on_step(self, ctx: StepContext) -> None:
        cfg = self.monitor.config
        if self._done or not ctx.backward:
            return
        if ctx.loss is None or ctx.loss.grad_fn is None:
            self._no_graph += 1
            return
        with self.timed():
            self._arm(ctx.loss.grad_fn, ctx.step, cfg.graph_max_nodes)

    def not_run(self) -> list[str]:
        if self.runs or not self._no_graph:
            return []
        return [f"graph-across-steps: the loss given to step() had no autograd graph on the "
                f"{self._no_graph} sampled steps (a number from loss.item(), or a detached "
                "tensor); pass the loss tensor itself"]

    def _arm(self, root: Any, step: int, cap: int) -> None:
        """Walk this step's graph; a node hooked at an earlier walk is itself the finding."""
        old, old_step = self._nodes, self._armed_step
        handles, nodes = [], {}
        seen: set[int] = set()
        stack = [root]
        while stack and len(seen) < cap:
            node = stack.pop()
            if id(node) in seen:
                continue
            seen.add(id(node))
            if hasattr(node, "variable"):  # AccumulateGrad: shared by every step's graph
                continue
            if id(node) in old:
                for h in handles:
                    h.remove()
                self._report(type(node).__name__, old_step, saved_state(node), now=step)
                return
            nodes[id(node)] = node
            handles.append(node.register_prehook(self._hook(id(node), node, step)))
            stack.extend(nxt for nxt, _ in node.next_functions if nxt is not None)
        self._disarm()
        self._handles, self._nodes, self._armed_step = handles, nodes, step

    def _hook(self, key: int, node: Any, step: int) -> Any:
        kind = type(node).__name__

        def pre_hook(grad_outputs: Any) -> None:
            if self._done:
                return
            state = saved_state(node)  # read only when a later backward reaches the node
            task = torch._C._current_graph_task_id()
            first = self._tasks.setdefault(key, task)
            if state == _FREED or first != task:
                self._report(kind, step, state)

        return pre_hook

    def _report(self, kind: str, step: int, state: str | None, now: int | None = None) -> None:
        now = now if now is not None else self.monitor.current_step
        self._done = True
        self._disarm()
        how = ("its saved tensors are no longer usable (freed by the earlier backward, or "
               "changed in place by the optimizer since), so backward is about to fail "
               "('Trying to backward through the graph a second time' or 'modified by an "
               "inplace operation')"
               if state == _FREED else
               "its graph is kept alive, so memory and time per step keep growing and its "
               "value is stale")
        self.monitor.emit(
            "graph-across-steps", f"autograd node {kind}",
            observed=f"the graph of step {now} reaches node {kind} built in step {step}",
            expected="each backward stays inside the graph built in its own step",
            message=f"a tensor carried from step {step} to a later step still holds its "
                    f"autograd graph (a recurrent state, a running loss total, a cached "
                    f"activation); {how}.",
            suggestion="detach the carried tensor at the step boundary (h = h.detach()), or "
                       "accumulate running totals with loss.item().")

    def _disarm(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
        self._nodes = {}
        self._tasks = {}

    def close(self) -> None:
        self._disarm()
