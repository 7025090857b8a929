"""Fuzzing of everything a user hands the library: ``HybridConfig`` values and keys, TOML config
files (``hpt train``'s loader), and checkpoint files.

The contract under test: bad input gets *one line* that names the problem, from a documented
exception type (an ``HPTError`` subclass); never an exception from deep inside, never a
traceback soup. Every target has a *checker* that runs one input and classifies the outcome:

- ``ok``: accepted (and, for configs, a trainer built from it runs a few steps);
- ``refused``: an ``HPTError`` with a one-line message that names the offending key, field or
  file (what each checker requires is in its docstring);
- ``poor-message``: an ``HPTError`` whose message is multi-line or names nothing useful;
- ``unhandled``: any other exception (the type and first line are recorded);
- ``state-changed``: a refused checkpoint load that changed the trainer anyway;
- ``wrongly-accepted`` / ``wrongly-refused``: a bad value accepted, a valid one refused.

Hypothesis generates the inputs (derandomized, so a run is reproducible); the strategies are
built from ``HybridConfig``'s own field types and bounds, so a new field is fuzzed without any
change here. :func:`campaign` counts cases and outcomes; ``tests/faults`` runs the same
checkers with fewer examples and asserts that nothing is ``unhandled`` or ``poor-message``.
"""
from __future__ import annotations

import copy
import io
import math
import random
import re
import tempfile
import typing
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hybrid_predict_trainer import CheckpointError, HPTError, HybridConfig
from hybrid_predict_trainer.checkpoint import save_atomic, state_digest

from .workload import Workload

# ------------------------------------------------------------------------------- outcomes


@dataclass
class Outcome:
    kind: str                 # ok | refused | poor-message | unhandled | state-changed |
    detail: str = ""          # wrongly-accepted | wrongly-refused

    @property
    def bad(self) -> bool:
        return self.kind not in ("ok", "refused")


def classify(fn: Callable[[], Any], names: tuple[str, ...] = ()) -> Outcome:
    """Run ``fn``; an HPTError must be one line and (when ``names`` is given) contain one of
    them."""
    try:
        fn()
    except HPTError as exc:
        msg = str(exc)
        if not msg.strip() or "\n" in msg or "\r" in msg:
            return Outcome("poor-message", f"{type(exc).__name__}: {msg!r}"[:300])
        if names and not any(n in msg for n in names):
            return Outcome("poor-message", f"{type(exc).__name__} does not name "
                                           f"{names[:3]!r}: {msg}"[:300])
        return Outcome("refused", f"{type(exc).__name__}: {msg}"[:300])
    except Exception as exc:  # noqa: BLE001 - that is what is being counted
        first = (str(exc).strip().splitlines() or [""])[0]
        return Outcome("unhandled", f"{type(exc).__name__}: {first}"[:300])
    return Outcome("ok")


# ------------------------------------------------------------------- HybridConfig strategies
_FIELDS = HybridConfig.model_fields


def _bounds(name: str) -> tuple[float | None, float | None, bool, bool]:
    lo = hi = None
    lo_open = hi_open = False
    for m in _FIELDS[name].metadata:
        if getattr(m, "ge", None) is not None:
            lo = m.ge
        if getattr(m, "gt", None) is not None:
            lo, lo_open = m.gt, True
        if getattr(m, "le", None) is not None:
            hi = m.le
        if getattr(m, "lt", None) is not None:
            hi, hi_open = m.lt, True
    return lo, hi, lo_open, hi_open


def _valid_value(name: str) -> st.SearchStrategy[Any] | None:
    ann = _FIELDS[name].annotation
    lo, hi, lo_open, hi_open = _bounds(name)
    if ann is bool:
        return st.booleans()
    if ann is int:
        a = int(lo + (1 if lo_open else 0)) if lo is not None else 0
        b = int(hi - (1 if hi_open else 0)) if hi is not None else a + 1000
        return st.integers(a, min(b, a + 100_000))
    if ann is float:
        a = float(lo) if lo is not None else -1e6
        b = float(hi) if hi is not None else 1e6
        return st.floats(a, b, exclude_min=lo_open, exclude_max=hi_open, allow_nan=False,
                         allow_infinity=False)
    if typing.get_origin(ann) is typing.Literal:
        return st.sampled_from(typing.get_args(ann))
    return None                      # list/dict/optional fields: built by valid_configs()


@st.composite
def valid_configs(draw: st.DrawFn) -> dict[str, Any]:
    """A random subset of fields with in-range values that also satisfy the cross-field rules
    (horizons <= max_horizon, weights summing to 1, ema_slow <= ema_fast)."""
    out: dict[str, Any] = {}
    for name in _FIELDS:
        if name in ("metrics_path",) or not draw(st.booleans()):
            continue
        strat = _valid_value(name)
        if strat is not None:
            out[name] = draw(strat)
    max_h = out.get("max_horizon", _FIELDS["max_horizon"].default)
    if "max_horizon" in out or draw(st.booleans()):
        out["horizons"] = draw(st.lists(st.integers(1, max(1, min(max_h, 64))), min_size=1,
                                        max_size=4))
    if draw(st.booleans()):
        raw = draw(st.lists(st.floats(0.01, 1.0), min_size=3, max_size=3))
        total = sum(raw)
        w = [r / total for r in raw]
        w[2] = 1.0 - w[0] - w[1]
        out["confidence_weights"] = dict(zip(("agreement", "accuracy", "stability"), w))
    fast = out.get("ema_fast", _FIELDS["ema_fast"].default)
    slow = out.get("ema_slow", _FIELDS["ema_slow"].default)
    if slow > fast:
        out["ema_fast"], out["ema_slow"] = slow, fast
    if out.get("predictor") == "rssm":      # keep the fuzzed runs small; rank < window
        for k, v in (("rssm_members", 2), ("rssm_hidden", 8), ("rssm_window", 8)):
            out[k] = min(out.get(k, _FIELDS[k].default), v)
        out["rssm_rank"] = min(out.get("rssm_rank", _FIELDS["rssm_rank"].default),
                               out["rssm_window"] - 1)
    return out


def config_mappings(printable_keys: bool = False) -> st.SearchStrategy[Any]:
    """Mappings with valid and random keys and any values, and non-mappings."""
    text = st.text(PRINTABLE if printable_keys else st.characters(), max_size=12)
    return st.one_of(st.dictionaries(st.one_of(st.sampled_from(sorted(_FIELDS)), text),
                                     ANY_VALUE, max_size=6), ANY_VALUE)


_ANY_SCALAR = st.one_of(
    st.none(), st.booleans(), st.integers(-2**70, 2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12))
ANY_VALUE = st.recursive(_ANY_SCALAR, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=8)


PRINTABLE = st.characters(blacklist_categories=("Cc", "Cs"))


def _bad_values(name: str, special_numbers: bool = True) -> st.SearchStrategy[Any]:
    """Values that must be refused for field ``name`` (``special_numbers``: also NaN, +-inf
    and true/false for numeric fields)."""
    ann = _FIELDS[name].annotation
    lo, hi, lo_open, hi_open = _bounds(name)
    wrong_type = st.sampled_from(["abc", [1, 2], {"a": 1}, None])
    if ann in (int, float):
        outs = [wrong_type]
        if special_numbers:
            outs.append(st.sampled_from([math.nan, math.inf, -math.inf, True, False]))
        if ann is int:
            outs.append(st.sampled_from([1.5, "1.5", [3]]))
            if lo is not None:
                outs.append(st.integers(max_value=int(lo) if lo_open else int(lo) - 1))
            if hi is not None:
                outs.append(st.integers(min_value=int(hi) if hi_open else int(hi) + 1))
        else:
            if lo is not None:
                outs.append(st.floats(max_value=float(lo), exclude_max=not lo_open,
                                      allow_nan=False, allow_infinity=False))
            if hi is not None:
                outs.append(st.floats(min_value=float(hi), exclude_min=not hi_open,
                                      allow_nan=False, allow_infinity=False))
        return st.one_of(*outs)
    if ann is bool:
        return st.sampled_from(["maybe", 2, -1, None, [True], 0.5])
    if typing.get_origin(ann) is typing.Literal:
        choices = typing.get_args(ann)
        return st.one_of(st.text(max_size=10).filter(lambda s: s not in choices),
                         st.sampled_from([None, 3, ["continuation"]]))
    if name == "horizons":
        return st.sampled_from([[], [0], [-2], [2000], "2,4", [1.5], None, [[2]], [True]])
    if name == "confidence_weights":
        return st.sampled_from([
            {"agreement": 1.0}, {"agreement": 0.5, "accuracy": 0.3, "stability": 0.3},
            {"agreement": -0.5, "accuracy": 1.2, "stability": 0.3},
            {"agreement": 0.5, "accuracy": 0.3, "stability": 0.2, "speed": 0.0},
            {"agreement": math.nan, "accuracy": 0.3, "stability": 0.2}, "even", [0.5, 0.3, 0.2],
            {"agreement": "x", "accuracy": 0.3, "stability": 0.2}])
    return st.sampled_from([12, ["x"], {"a": 1}])


# ---------------------------------------------------------------------------- config checkers
def check_config_any(data: Any) -> Outcome:
    """Any mapping (or non-mapping): accepted, or ConfigError naming one of its keys."""
    names = tuple(str(k) for k in data) if isinstance(data, dict) else ("dict", "table")
    return classify(lambda: HybridConfig.from_dict(data), names + ("config",))


def check_config_valid(data: dict[str, Any]) -> Outcome:
    """In-range values are accepted, survive a dict round trip, and a trainer built from them
    runs three steps."""
    def run() -> None:
        cfg = HybridConfig.from_dict(data)
        again = HybridConfig.from_dict(cfg.model_dump())
        if again != cfg:
            raise AssertionError(f"round trip changed the config: {cfg!r} -> {again!r}")
        _run_steps(cfg, 3)
    out = classify(run)
    if out.kind == "refused" and out.detail.startswith("HealthError"):
        return Outcome("ok", out.detail)     # monitor_policy="raise" doing its job
    if out.kind == "refused":            # a valid config must never be refused
        return Outcome("wrongly-refused", out.detail)
    return out


def check_config_bad_field(data: dict[str, Any], name: str, value: Any) -> Outcome:
    """A valid config with one field set to a bad value: ConfigError naming that field."""
    bad = dict(data)
    bad[name] = value
    names = (name,) + (("max_horizon",) if name in ("horizons", "max_horizon") else ())
    out = classify(lambda: HybridConfig.from_dict(bad), names)
    if out.kind == "ok":
        return Outcome("wrongly-accepted", f"{name}={value!r}")
    return out


def check_config_unknown_key(key: str) -> Outcome:
    """An unknown key: ConfigError that repeats the key."""
    if key in _FIELDS:
        return Outcome("ok")
    out = classify(lambda: HybridConfig.from_dict({key: 1}), (key, repr(key)[1:-1]))
    if out.kind == "ok":
        return Outcome("wrongly-accepted", f"unknown key {key!r}")
    return out


_TINY: dict[str, Any] = {}


def _run_steps(cfg: HybridConfig, n: int) -> None:
    from hybrid_predict_trainer import HybridTrainer
    if not _TINY:
        g = torch.Generator().manual_seed(0)
        _TINY["x"] = torch.randn(16, 8, generator=g)
        _TINY["y"] = torch.randint(0, 3, (16,), generator=g)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 6), torch.nn.ReLU(), torch.nn.Linear(6, 3))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with HybridTrainer(model, opt, cfg) as trainer:
            for _ in range(n):
                trainer.step(lambda: F.cross_entropy(model(_TINY["x"]), _TINY["y"]))


# ------------------------------------------------------------------------------- TOML files
GOOD_TOML = ('[run]\nentry = "task.py:build"\nmax_steps = 5\n\n[hybrid]\nmax_horizon = 8\n'
             'horizons = [2, 4, 8]\nconfidence_threshold = 0.5\npredictor = "continuation"\n')


def toml_loader() -> Callable[[str], Any] | None:
    """The CLI's TOML loader (``cli.schema.parse_config``) if this installation has it."""
    try:
        from hybrid_predict_trainer.cli.schema import parse_config
    except ImportError:
        return None
    return lambda text: parse_config(text, Path("fuzz.toml"), Path("."))


def check_toml(text: str) -> Outcome:
    """Any text: accepted, or ConfigError starting with the file's name, on one line."""
    loader = toml_loader()
    if loader is None:
        return _check_toml_fallback(text)
    out = classify(lambda: loader(text), ("fuzz.toml",))
    return out


def _check_toml_fallback(text: str) -> Outcome:
    import tomllib
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return Outcome("refused", "not TOML")
    return check_config_any(data.get("hybrid", {}))


@st.composite
def toml_texts(draw: st.DrawFn, printable_keys: bool = False) -> str:
    """Valid files with random [hybrid] tables, edited valid files, and random text
    (``printable_keys``: table keys without control characters)."""
    kind = draw(st.sampled_from(["table", "edit", "text"]))
    if kind == "text":
        return draw(st.text(max_size=200))
    if kind == "table":
        import tomli_w
        keys = st.one_of(st.sampled_from(sorted(_FIELDS)), st.text(
            PRINTABLE if printable_keys else st.characters(), min_size=1, max_size=10))
        vals = st.recursive(
            st.one_of(st.booleans(), st.integers(-2**63, 2**63 - 1),
                      st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=10)),
            lambda inner: st.one_of(st.lists(inner, max_size=3),
                                    st.dictionaries(st.text(min_size=1, max_size=6), inner,
                                                    max_size=3)), max_leaves=6)
        table = draw(st.dictionaries(keys, vals, max_size=5))
        doc: dict[str, Any] = {"run": {"entry": "task.py:build", "max_steps": 5},
                               "hybrid": table}
        try:
            return tomli_w.dumps(doc)
        except (TypeError, ValueError):
            return GOOD_TOML
    text = GOOD_TOML
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["delete", "insert", "dup", "truncate"]))
        i = draw(st.integers(0, len(text)))
        if op == "delete":
            j = draw(st.integers(i, min(len(text), i + 12)))
            text = text[:i] + text[j:]
        elif op == "insert":
            text = text[:i] + draw(st.text(max_size=8)) + text[i:]
        elif op == "dup":
            lines = text.splitlines(True)
            if lines:
                k = draw(st.integers(0, len(lines) - 1))
                text = "".join(lines[:k + 1] + [lines[k]] + lines[k + 1:])
        else:
            text = text[:i]
    return text


TOML_SPECIAL = [
    "", "\x00", "[run", "[[run]]\nentry = 1\n", "[run]\nentry = \"task.py:build\"\n",
    GOOD_TOML + "[hybrid]\n",                                   # duplicate table
    GOOD_TOML.replace("max_horizon = 8", "max_horizon = 1979-05-27"),
    GOOD_TOML + 'extra = """\n' + "x" * 1000 + '\n"""\n',
    GOOD_TOML + '"a\\nb" = 1\n',                                  # a key with a newline
    GOOD_TOML + "deep = " + "[" * 3000 + "]" * 3000 + "\n",       # nesting beyond recursion
    GOOD_TOML + "seed = 99999999999999999999999\n",
    GOOD_TOML.replace("[hybrid]", "hybrid = 3\n[other]"),
]


# ------------------------------------------------------------------------------ checkpoints
@dataclass
class CheckpointCorpus:
    """A real checkpoint (a trainer in the middle of a predicted segment), its bytes and
    what its loaded state must be."""

    data: bytes
    state: dict[str, Any]
    workload: Workload
    tmp: Path
    other_model: bytes = b""
    leaf_paths: list[tuple[Any, ...]] = field(default_factory=list)

    def target(self) -> Any:
        """A fresh trainer of the same architecture, trained a few steps (so a load that
        changed it partly would show)."""
        model, _opt, trainer = self.workload.build()
        data, _, _ = self.workload.data()
        for xb, yb in data[:3]:
            trainer.step(lambda xb=xb, yb=yb: F.cross_entropy(model(xb), yb))
        return trainer


def make_corpus(tmp: Path, steps: int = 36) -> CheckpointCorpus:
    tmp.mkdir(parents=True, exist_ok=True)
    wl = Workload(steps=steps, hidden=16, monitor=False)
    model, _opt, trainer = wl.build()
    data, _, _ = wl.data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for xb, yb in data:
            trainer.step(lambda xb=xb, yb=yb: F.cross_entropy(model(xb), yb))
    path = tmp / "base.pt"
    trainer.save(path)
    other = Workload(steps=0, hidden=24, monitor=False)
    _m, _o, other_trainer = other.build()
    other_path = tmp / "other.pt"
    other_trainer.save(other_path)
    state = trainer.state_dict()
    corpus = CheckpointCorpus(path.read_bytes(), state, Workload(steps=3, hidden=16,
                                                                   monitor=False), tmp,
                              other_model=other_path.read_bytes())
    corpus.leaf_paths = list(_leaf_paths(state))
    return corpus


def _leaf_paths(obj: Any, prefix: tuple[Any, ...] = ()) -> Any:
    if isinstance(obj, dict) and obj:
        for k, v in obj.items():
            yield from _leaf_paths(v, prefix + (k,))
    elif isinstance(obj, (list, tuple)) and obj and not isinstance(obj, torch.Tensor):
        for i, v in enumerate(obj):
            yield from _leaf_paths(v, prefix + (i,))
    else:
        yield prefix


def check_checkpoint_bytes(corpus: CheckpointCorpus, data: bytes) -> Outcome:
    """Load arbitrary bytes as a checkpoint into a trained trainer: either the exact original
    state loads, or a CheckpointError naming the file is raised and the trainer is unchanged."""
    path = corpus.tmp / "case.pt"
    path.write_bytes(data)
    return _load_and_judge(corpus, path)


def _load_and_judge(corpus: CheckpointCorpus, path: Path) -> Outcome:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = corpus.target()
        before = state_digest(trainer.state_dict())
        out = classify(lambda: trainer.load(path), (str(path), "checkpoint"))
        if out.kind == "refused" and state_digest(trainer.state_dict()) != before:
            return Outcome("state-changed", out.detail)
        if out.kind == "ok":
            ref = corpus.state
            if state_digest(trainer.state_dict()["model"]) != state_digest(ref["model"]):
                return Outcome("wrongly-accepted", "a damaged file loaded with other weights")
    return out


def check_checkpoint_state(corpus: CheckpointCorpus, leaf: tuple[Any, ...], value: Any
                           ) -> Outcome:
    """A well-formed file (valid digest) whose state has one entry replaced: it loads, or a
    CheckpointError is raised and the trainer is unchanged."""
    state = copy.deepcopy(corpus.state)
    node = state
    for k in leaf[:-1]:
        node = node[k]
    if leaf:
        if isinstance(node, tuple):
            return Outcome("ok")
        node[leaf[-1]] = value
    else:
        state = value
    path = corpus.tmp / "case_state.pt"
    try:
        save_atomic(state if isinstance(state, dict) else {"state": state}, path)
    except CheckpointError:
        return Outcome("ok")            # not representable as a checkpoint at all
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = corpus.target()
        before = state_digest(trainer.state_dict())
        out = classify(lambda: trainer.load(path), ("checkpoint",))
        if out.kind == "refused" and state_digest(trainer.state_dict()) != before:
            return Outcome("state-changed", out.detail)
    if out.kind == "ok":
        out.detail = "loaded"
    return out


REPLACEMENTS = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 5), st.floats(allow_nan=True),
    st.text(max_size=5), st.lists(st.integers(0, 3), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.sampled_from([torch.zeros(3), torch.zeros(2, 2, dtype=torch.int64), torch.tensor(1.5),
                     torch.zeros(0)]))


@st.composite
def byte_mutations(draw: st.DrawFn, data: bytes) -> bytes:
    """Truncations, bit flips, overwritten or deleted spans, appended junk."""
    op = draw(st.sampled_from(["truncate", "flip", "overwrite", "delete", "append", "insert"]))
    n = len(data)
    if op == "truncate":
        return data[:draw(st.integers(0, n - 1))]
    buf = bytearray(data)
    if op == "flip":
        for _ in range(draw(st.integers(1, 8))):
            i = draw(st.integers(0, n - 1))
            buf[i] ^= 1 << draw(st.integers(0, 7))
        return bytes(buf)
    if op == "overwrite":
        i = draw(st.integers(0, n - 1))
        junk = draw(st.binary(min_size=1, max_size=64))
        buf[i:i + len(junk)] = junk
        return bytes(buf[:n])
    if op == "delete":
        i = draw(st.integers(0, n - 1))
        return bytes(buf[:i] + buf[i + draw(st.integers(1, 64)):])
    if op == "insert":
        i = draw(st.integers(0, n))
        return bytes(buf[:i] + draw(st.binary(min_size=1, max_size=32)) + buf[i:])
    return data + draw(st.binary(min_size=1, max_size=256))


def special_checkpoints(corpus: CheckpointCorpus) -> list[tuple[str, bytes]]:
    """Hand-written cases: wrong version, wrong format tag, another model, foreign files."""
    def saved(obj: Any) -> bytes:
        buf = io.BytesIO()
        torch.save(obj, buf)
        return buf.getvalue()
    base = dict(corpus.state)
    good = {"format": "hybrid-predict-trainer", "version": 2, **base}
    good["integrity"] = {"sha256": state_digest(good)}
    out = [("empty file", b""), ("zero bytes", bytes(4096)),
           ("random bytes", random.Random(0).randbytes(4096)),
           ("another model's shapes", corpus.other_model),
           ("plain tensor", saved(torch.zeros(3))), ("list", saved([1, 2])),
           ("dict without format tag", saved({"model": base["model"]})),
           ("integrity digest missing", saved({k: v for k, v in good.items()
                                               if k != "integrity"})),
           ("integrity digest wrong", saved({**good, "integrity": {"sha256": "0" * 64}})),
           ("integrity not a dict", saved({**good, "integrity": "x"}))]
    for tag in ("other-program", None, 1, ""):
        out.append((f"format tag {tag!r}", saved({**good, "format": tag})))
    for version in (0, 3, 99, "2", None, True, 2.0, -1):
        out.append((f"version {version!r}", saved({**good, "version": version})))
    return out


def check_special(corpus: CheckpointCorpus, name: str, data: bytes) -> Outcome:
    """Each hand-written case must be refused (CheckpointError, one line, file named)."""
    out = check_checkpoint_bytes(corpus, data)
    if out.kind == "ok":
        return Outcome("wrongly-accepted", f"{name}: loaded")
    return out


# ------------------------------------------------------------------------------- campaign
@dataclass
class Tally:
    cases: int = 0
    outcomes: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    _seen: set = field(default_factory=set)

    def add(self, what: str, out: Outcome) -> None:
        """Count one case; keep one example per distinct kind of failure."""
        self.cases += 1
        self.outcomes[out.kind] += 1
        if not out.bad or len(self.examples) >= 12:
            return
        shape = re.sub(r"'[^']*'|\"[^\"]*\"|\d+(\.\d+)?", "_", out.detail)[:70]
        if (out.kind, shape) not in self._seen:
            self._seen.add((out.kind, shape))
            self.examples.append(f"{what}: {out.kind}: {out.detail}")

    def as_dict(self) -> dict[str, Any]:
        return {"cases": self.cases, "outcomes": dict(self.outcomes),
                "unhandled": self.outcomes["unhandled"],
                "poor_messages": self.outcomes["poor-message"],
                "state_changed": self.outcomes["state-changed"],
                "wrongly_accepted": self.outcomes["wrongly-accepted"],
                "wrongly_refused": self.outcomes["wrongly-refused"],
                "examples": self.examples}


def _run(strategy: st.SearchStrategy[Any], body: Callable[[Any], None], n: int) -> None:
    @settings(max_examples=n, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def prop(x: Any) -> None:
        body(x)
    prop()


def campaign(examples: int = 300, workdir: Path | None = None) -> dict[str, Any]:
    """Run every fuzz target with ``examples`` Hypothesis examples each."""
    tallies = {k: Tally() for k in ("config-any", "config-valid", "config-bad-field",
                                    "config-unknown-key", "toml", "checkpoint-bytes",
                                    "checkpoint-special", "checkpoint-state")}
    _run(config_mappings(),
         lambda d: tallies["config-any"].add(repr(d)[:80], check_config_any(d)), examples)
    _run(valid_configs(), lambda d: tallies["config-valid"].add(repr(d)[:80],
                                                               check_config_valid(d)),
         max(10, examples // 3))
    _run(st.tuples(valid_configs(), st.sampled_from(sorted(_FIELDS)).flatmap(
        lambda n: st.tuples(st.just(n), _bad_values(n)))),
         lambda t: tallies["config-bad-field"].add(
             f"{t[1][0]}={t[1][1]!r}", check_config_bad_field(t[0], *t[1])), examples)
    _run(st.text(min_size=1, max_size=20),
         lambda k: tallies["config-unknown-key"].add(repr(k), check_config_unknown_key(k)),
         examples)
    for text in TOML_SPECIAL:
        tallies["toml"].add(repr(text[:40]), check_toml(text))
    _run(toml_texts(), lambda t: tallies["toml"].add(repr(t[:60]), check_toml(t)), examples)
    with tempfile.TemporaryDirectory() as d:
        corpus = make_corpus(Path(workdir or d) / "fuzz-checkpoints")
        for name, data in special_checkpoints(corpus):
            tallies["checkpoint-special"].add(name, check_special(corpus, name, data))
        _run(byte_mutations(corpus.data),
             lambda b: tallies["checkpoint-bytes"].add(f"{len(b)} bytes",
                                                       check_checkpoint_bytes(corpus, b)),
             examples)
        _run(st.tuples(st.sampled_from(corpus.leaf_paths), REPLACEMENTS),
             lambda t: tallies["checkpoint-state"].add(
                 f"{'/'.join(map(str, t[0]))}={t[1]!r}"[:100],
                 check_checkpoint_state(corpus, *t)),
             max(10, examples // 3))
    out = {k: v.as_dict() for k, v in tallies.items()}
    out["total"] = {"cases": sum(t.cases for t in tallies.values()),
                    "unhandled": sum(t.outcomes["unhandled"] for t in tallies.values()),
                    "poor_messages": sum(t.outcomes["poor-message"] for t in tallies.values()),
                    "state_changed": sum(t.outcomes["state-changed"] for t in tallies.values()),
                    "wrongly_accepted": sum(t.outcomes["wrongly-accepted"]
                                            for t in tallies.values()),
                    "wrongly_refused": sum(t.outcomes["wrongly-refused"]
                                           for t in tallies.values()),
                    "toml_loader": "cli.schema.parse_config" if toml_loader() else
                                   "tomllib + HybridConfig.from_dict"}
    return out
