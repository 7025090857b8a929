"""Fuzzing: HybridConfig, TOML config files (``hpt``'s loader) and checkpoint files.

Every input is accepted or refused with one line that names the problem, from an
``HPTError`` subclass; never an exception from deep inside, and a refused checkpoint load never
changes the trainer. The campaign runs the same checkers with 1,000 examples per target."""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hybrid_predict_trainer import ConfigError, HybridConfig

from benchmarks.faults import fuzz

FAST = settings(max_examples=60, deadline=None, database=None, derandomize=True,
                suppress_health_check=list(HealthCheck))


def ok(out: fuzz.Outcome) -> None:
    assert not out.bad, f"{out.kind}: {out.detail}"


# ----------------------------------------------------------------------------- HybridConfig
@FAST
@given(fuzz.config_mappings(printable_keys=True))
def test_any_mapping_is_a_config_or_one_clear_line(data):
    ok(fuzz.check_config_any(data))


@settings(max_examples=25, deadline=None, database=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
@given(fuzz.valid_configs())
def test_valid_configs_round_trip_and_train(data):
    ok(fuzz.check_config_valid(data))


@FAST
@given(fuzz.valid_configs(), st.sampled_from(sorted(HybridConfig.model_fields)).flatmap(
    lambda n: st.tuples(st.just(n), fuzz._bad_values(n, special_numbers=False))))
def test_one_bad_field_is_refused_naming_it(data, bad):
    ok(fuzz.check_config_bad_field(data, *bad))


@FAST
@given(st.text(fuzz.PRINTABLE, min_size=1, max_size=20))
def test_unknown_keys_are_refused_naming_them(key):
    ok(fuzz.check_config_unknown_key(key))


@pytest.mark.parametrize("field, value", [
    ("bandit_penalty", math.inf), ("divergence_sigma", math.inf),
    ("rollback_tolerance", math.inf),
    ("confidence_weights", {"agreement": math.nan, "accuracy": 0.3, "stability": 0.2}),
    ("warmup_steps", True), ("horizons", [True, 2])])
def test_special_numbers_are_refused_naming_the_field(field, value):
    with pytest.raises(ConfigError, match=field):
        HybridConfig(**{field: value})


@pytest.mark.parametrize("cfg", [{"predictor": "rssm", "seed": 2**70},
                                 {"predictor": "rssm", "rssm_rank": 12, "rssm_window": 8}],
                         ids=["seed-overflow", "rssm-rank-window"])
def test_configs_the_trainer_cannot_build_are_refused_by_the_config(cfg):
    ok(fuzz.classify(lambda: fuzz._run_steps(HybridConfig(**cfg), 1)))


def test_a_key_with_a_newline_still_gives_one_line():
    ok(fuzz.check_config_unknown_key("max\nhorizon"))


# ------------------------------------------------------------------------------------ TOML
@FAST
@given(fuzz.toml_texts(printable_keys=True))
def test_any_toml_text_is_a_config_or_one_clear_line(text):
    ok(fuzz.check_toml(text))


@pytest.mark.parametrize("text", [t for t in fuzz.TOML_SPECIAL
                                  if "deep" not in t and "a\\nb" not in t])
def test_special_toml_files(text):
    ok(fuzz.check_toml(text))


def test_deeply_nested_toml_is_refused():
    ok(fuzz.check_toml(fuzz.GOOD_TOML + "deep = " + "[" * 3000 + "]" * 3000 + "\n"))


# ----------------------------------------------------------------------------- checkpoints
@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return fuzz.make_corpus(tmp_path_factory.mktemp("ckpt-fuzz"))


def test_damaged_checkpoint_bytes_are_refused_or_load_exactly(corpus):
    @settings(max_examples=80, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(fuzz.byte_mutations(corpus.data))
    def prop(data):
        ok(fuzz.check_checkpoint_bytes(corpus, data))
    prop()


def test_bit_flip_in_a_tensor_is_caught_by_the_digest(corpus):
    needle = corpus.state["model"]["0.weight"].flatten()[:4].numpy().tobytes()
    at = corpus.data.find(needle)
    assert at > 0
    data = bytearray(corpus.data)
    data[at + 1] ^= 0x10                  # the zip container alone would load this silently
    out = fuzz.check_checkpoint_bytes(corpus, bytes(data))
    assert out.kind == "refused" and "integrity check" in out.detail


def test_wrong_version_format_tag_or_model_is_refused(corpus):
    cases = fuzz.special_checkpoints(corpus)
    assert len(cases) >= 20
    words = {"version": "version", "format tag": "format tag", "another model": "another model",
             "integrity": "integrity", "without format": "no format tag"}
    for name, data in cases:
        out = fuzz.check_special(corpus, name, data)
        assert out.kind == "refused", f"{name}: {out.kind}: {out.detail}"
        for key, word in words.items():
            if key in name:
                assert word in out.detail, (name, out.detail)


def test_a_malformed_checkpoint_entry_leaves_the_trainer_unchanged(corpus):
    for leaf, value in [(("trainer", "stats"), "junk"), (("model", "0.weight"), 3),
                        (("trainer", "phase"), "nope"), (("rng", "torch"), torch.zeros(3)),
                        (("trainer", "accuracy"), "x"), (("bandit",), None)]:
        out = fuzz.check_checkpoint_state(corpus, leaf, value)
        assert out.kind == "refused", (leaf, out.kind, out.detail)
