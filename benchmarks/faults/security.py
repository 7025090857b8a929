"""Security properties: crafted checkpoints never execute code, files are never
world-writable, and nothing in the library talks to the network.

- *Crafted checkpoints*: pickles whose loading runs code (``os.system``, ``exec``, ``eval``,
  ``subprocess.Popen``, a whole pickled module, a numpy object array, a real checkpoint with
  its ``data.pkl`` swapped), in the zip, the legacy and the raw-pickle formats. Each must be
  refused by ``load_checked`` and ``trainer.load`` with a ``CheckpointError``, and the marker
  file the payload would create must not exist afterwards. :func:`payload_is_live` proves,
  in a child process, that ``torch.load(weights_only=False)`` of the same file does run the
  code, so the refusal is what protects the user.
- *File modes*: under umask 022, 077 and 000, checkpoint files and the folders ``save``
  creates get ``0o666``/``0o777`` minus the umask, and never the world-write bit; the metrics
  JSONL is checked the same way.
- *No network*: the package source imports no network module (static scan), and a training
  run with the health monitor, save, load, the demo's data loading and the config loader all
  run with every socket entry point and subprocess creation patched to fail.
"""
from __future__ import annotations

import ast
import contextlib
import io
import os
import pickle
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path
from typing import Any, Callable, Iterator
from unittest import mock

import numpy as np
import torch
import torch.nn.functional as F

import hybrid_predict_trainer
from hybrid_predict_trainer import CheckpointError, HybridConfig, HybridTrainer
from hybrid_predict_trainer.checkpoint import FORMAT, VERSION, load_checked

ROOT = Path(__file__).resolve().parents[2]
PACKAGE_DIR = Path(hybrid_predict_trainer.__file__).resolve().parent


class _Reduce:
    """An object whose unpickling calls ``fn(*args)``."""

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.fn, self.args = fn, args

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.fn, self.args)


def _touch_code(marker: Path) -> str:
    return f"open({str(marker)!r}, 'w').write('pwned')"


def _tagged(evil: Any) -> dict[str, Any]:
    return {"format": FORMAT, "version": VERSION, "model": {"w": torch.zeros(2)}, "x": evil}


def _torch_bytes(obj: Any, zip_format: bool = True) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf, _use_new_zipfile_serialization=zip_format)
    return buf.getvalue()


def _swap_data_pkl(real: bytes, evil_pickle: bytes) -> bytes:
    """A real checkpoint with only its pickle replaced (tensor records kept)."""
    src = zipfile.ZipFile(io.BytesIO(real))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename.endswith("/data.pkl"):
                data = evil_pickle
            dst.writestr(info.filename, data)
    return out.getvalue()


def crafted_payloads(marker_dir: Path, real_checkpoint: bytes | None = None
                     ) -> list[tuple[str, Path, bytes]]:
    """``(name, marker, file bytes)``: loading each file unsafely creates ``marker``."""
    out: list[tuple[str, Path, bytes]] = []

    def add(name: str, build: Callable[[Path], bytes]) -> None:
        marker = marker_dir / f"marker-{len(out)}"
        out.append((name, marker, build(marker)))

    add("os.system via __reduce__ (zip checkpoint, valid format tag)",
        lambda m: _torch_bytes(_tagged(_Reduce(os.system, (f"touch '{m}'",)))))
    add("builtins.exec via __reduce__",
        lambda m: _torch_bytes(_tagged(_Reduce(exec, (_touch_code(m),)))))
    add("builtins.eval via __reduce__",
        lambda m: _torch_bytes(_tagged(_Reduce(eval, (_touch_code(m),)))))
    add("subprocess.Popen via __reduce__",
        lambda m: _torch_bytes(_tagged(_Reduce(subprocess.Popen, (["touch", str(m)],)))))
    add("legacy (non-zip) torch.save format",
        lambda m: _torch_bytes(_tagged(_Reduce(exec, (_touch_code(m),))), zip_format=False))
    add("raw pickle, protocol 2",
        lambda m: pickle.dumps(_tagged(_Reduce(exec, (_touch_code(m),))), protocol=2))
    add("raw pickle, protocol 5",
        lambda m: pickle.dumps({"x": _Reduce(exec, (_touch_code(m),))}, protocol=5))
    add("hand-written protocol-0 pickle (GLOBAL os.system)",
        lambda m: f"cos\nsystem\n(S'touch {m}'\ntR.".encode())
    add("numpy object array holding a payload",
        lambda m: _torch_bytes({"x": np.array([_Reduce(exec, (_touch_code(m),))],
                                              dtype=object)}))
    add("a whole pickled module whose class runs code",
        lambda m: _torch_bytes({"module": _Reduce(exec, (_touch_code(m),)),
                                "net": torch.nn.Linear(2, 2)}))
    if real_checkpoint is not None:
        add("real checkpoint with its data.pkl swapped for a payload",
            lambda m: _swap_data_pkl(real_checkpoint, pickle.dumps(
                _tagged(_Reduce(exec, (_touch_code(m),))), protocol=2)))
    return out


def check_crafted(workdir: Path, real_checkpoint: bytes | None = None,
                  verify_live: bool = False) -> list[dict[str, Any]]:
    """Try every crafted file with ``load_checked`` and ``trainer.load``."""
    workdir.mkdir(parents=True, exist_ok=True)
    results = []
    for i, (name, marker, data) in enumerate(crafted_payloads(workdir, real_checkpoint)):
        path = workdir / f"crafted-{i}.pt"
        path.write_bytes(data)
        rec: dict[str, Any] = {"payload": name}
        errors = []
        for how, load in (("load_checked", lambda: load_checked(path)),
                          ("trainer.load", lambda: _trainer().load(path))):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    load()
                errors.append(f"{how}: loaded")
            except CheckpointError as exc:
                rec[how] = str(exc)
            except Exception as exc:  # noqa: BLE001 - counted as not refused
                errors.append(f"{how}: {type(exc).__name__}: {exc}")
        rec["code_ran"] = marker.exists()
        rec["refused"] = not errors and not rec["code_ran"]
        rec["errors"] = errors
        if verify_live:
            rec["payload_is_live"] = payload_is_live(path, marker)
            marker.unlink(missing_ok=True)
        results.append(rec)
    return results


def payload_is_live(path: Path, marker: Path, timeout: float = 120.0) -> bool:
    """Load ``path`` with ``weights_only=False`` in a child process: True if the marker
    appeared (the payload really runs code when loaded unsafely)."""
    marker.unlink(missing_ok=True)
    code = ("import sys, torch\n"
            "sys.path.insert(0, sys.argv[2])\n"
            "try:\n    torch.load(sys.argv[1], weights_only=False)\n"
            "except Exception:\n    pass\n")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    subprocess.run([sys.executable, "-c", code, str(path), str(ROOT)], cwd=ROOT, env=env,
                   capture_output=True, timeout=timeout)
    for _ in range(50):                 # Popen payloads finish in their own process
        if marker.exists():
            return True
        import time
        time.sleep(0.05)
    return marker.exists()


def _trainer() -> HybridTrainer:
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 2)
    return HybridTrainer(model, torch.optim.SGD(model.parameters(), lr=0.1),
                         HybridConfig(monitor=False))


# ------------------------------------------------------------------------------ file modes
def check_modes(workdir: Path, umask: int) -> dict[str, Any]:
    """Save a checkpoint into new nested folders and write a metrics JSONL under ``umask``;
    report every mode against the expected ``0o666/0o777 & ~umask & ~0o002``."""
    old = os.umask(umask)
    try:
        torch.manual_seed(0)
        model = torch.nn.Linear(4, 2)
        run = workdir / f"umask-{umask:03o}"
        metrics = run / "logs" / "metrics.jsonl"
        trainer = HybridTrainer(model, torch.optim.SGD(model.parameters(), lr=0.1),
                                HybridConfig(monitor=False, metrics_path=str(metrics)))
        x, y = torch.randn(8, 4), torch.randn(8, 2)
        trainer.step(lambda: F.mse_loss(model(x), y))
        ck = trainer.save(run / "checkpoints" / "deep" / "checkpoint.pt")
        trainer.close()
    finally:
        os.umask(old)
    want_file, want_dir = 0o666 & ~umask & ~0o002, 0o777 & ~umask & ~0o002
    items = {"checkpoint file": (ck, want_file),
             "checkpoint folder": (ck.parent, want_dir),
             "checkpoint parent folder": (ck.parent.parent, want_dir),
             "metrics file": (metrics, want_file), "metrics folder": (metrics.parent, want_dir)}
    out: dict[str, Any] = {"umask": f"{umask:03o}", "items": {}}
    for name, (path, want) in items.items():
        mode = path.stat().st_mode & 0o777
        out["items"][name] = {"mode": f"{mode:03o}", "expected": f"{want:03o}",
                              "ok": mode == want, "world_writable": bool(mode & 0o002)}
    out["checkpoint_ok"] = all(v["ok"] for k, v in out["items"].items() if "checkpoint" in k)
    out["all_ok"] = all(v["ok"] for v in out["items"].values())
    return out


# ------------------------------------------------------------------------------- network
NETWORK_MODULES = ("socket", "ssl", "urllib", "http", "requests", "httpx", "aiohttp",
                   "ftplib", "smtplib", "poplib", "imaplib", "telnetlib", "xmlrpc",
                   "websocket", "websockets", "paramiko", "boto3", "botocore", "grpc")


def static_network_scan(package_dir: Path = PACKAGE_DIR) -> dict[str, Any]:
    """Imports of network modules, and ``pip download`` command lines, in the package source
    (paths relative to the package's parent folder)."""
    imports, downloads = [], []
    for py in sorted(package_dir.rglob("*.py")):
        rel = py.relative_to(package_dir.parent).as_posix()
        try:
            tree = ast.parse(py.read_text(encoding="utf-8"))
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for n in names:
                if n.split(".")[0] in NETWORK_MODULES:
                    imports.append(f"{rel}:{node.lineno}: import {n}")
            if isinstance(node, (ast.List, ast.Tuple)):
                consts = {e.value for e in node.elts if isinstance(e, ast.Constant)}
                if {"pip", "download"} <= consts:       # a `pip download` command line
                    downloads.append(f"{rel}:{node.lineno}")
    return {"network_imports": imports, "pip_download_calls": downloads}


@contextlib.contextmanager
def no_network() -> Iterator[list[str]]:
    """Every socket entry point and subprocess creation raises (and is recorded)."""
    import socket
    attempts: list[str] = []

    def blocked(name: str) -> Callable[..., Any]:
        def fail(*args: Any, **kw: Any) -> Any:
            attempts.append(name)
            raise OSError(f"network access attempted: {name}")
        return fail
    patches = [mock.patch.object(socket.socket, "connect", blocked("socket.connect")),
               mock.patch.object(socket.socket, "connect_ex", blocked("socket.connect_ex")),
               mock.patch.object(socket.socket, "sendto", blocked("socket.sendto")),
               mock.patch.object(socket, "create_connection", blocked("create_connection")),
               mock.patch.object(socket, "getaddrinfo", blocked("getaddrinfo")),
               mock.patch.object(subprocess, "Popen", blocked("subprocess.Popen"))]
    with contextlib.ExitStack() as stack:
        for p in patches:
            stack.enter_context(p)
        yield attempts


def runtime_without_network(workdir: Path) -> dict[str, Any]:
    """Training with the monitor, save, load, the demo's data split and the config loader,
    with the network blocked."""
    done: list[str] = []
    error = None
    with no_network() as attempts:
        try:
            from hybrid_predict_trainer.demo import _split
            xtr, ytr, _, _ = _split(0)
            done.append("demo data (MNIST-5k split)")
            torch.manual_seed(0)
            model = torch.nn.Sequential(torch.nn.Linear(784, 16), torch.nn.ReLU(),
                                        torch.nn.Linear(16, 10))
            opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                trainer = HybridTrainer(model, opt, HybridConfig(
                    warmup_steps=3, full_steps=2, confidence_threshold=0.0,
                    cost_model="fixed", segments=True))
                for i in range(12):
                    xb, yb = xtr[i * 50:(i + 1) * 50], ytr[i * 50:(i + 1) * 50]
                    trainer.step(lambda xb=xb, yb=yb: F.cross_entropy(model(xb), yb))
                done.append(f"12 training steps ({trainer.stats.predicted_steps} predicted)")
                trainer.save(workdir / "net" / "checkpoint.pt")
                trainer.load(workdir / "net" / "checkpoint.pt")
                done.append("save + load")
                trainer.close()
            try:
                from hybrid_predict_trainer.cli.schema import parse_config
                parse_config('[run]\nentry = "task.py:build"\nmax_steps = 1\n',
                             workdir / "c.toml")
                done.append("config loader")
            except ImportError:
                pass
        except Exception as exc:  # noqa: BLE001 - recorded
            error = f"{type(exc).__name__}: {exc}"
    return {"ran": done, "network_attempts": list(attempts), "error": error}
