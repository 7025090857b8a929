import pytest

from hybrid_predict_trainer import ConfigError, HybridConfig


def test_defaults_are_valid_and_documented():
    cfg = HybridConfig()
    assert cfg.warmup_steps >= 1 and 0 < cfg.confidence_threshold <= 1
    for name, field in HybridConfig.model_fields.items():
        assert field.description, f"{name} has no documented reason"


def test_unknown_key_lists_valid_keys_and_suggests():
    with pytest.raises(ConfigError) as e:
        HybridConfig(warmup_step=5)
    msg = str(e.value)
    assert "'warmup_step'" in msg and "did you mean 'warmup_steps'" in msg
    assert "max_horizon" in msg  # the valid keys are listed
    assert "\n" not in msg


@pytest.mark.parametrize("kwargs, field", [
    ({"warmup_steps": 0}, "warmup_steps"),
    ({"confidence_threshold": 1.5}, "confidence_threshold"),
    ({"predictor": "oracle"}, "predictor"),
    ({"check_every": "two"}, "check_every"),
    ({"horizons": [2, 64], "max_horizon": 16}, "horizons"),
    ({"confidence_weights": {"agreement": 0.5, "accuracy": 0.5, "stability": 0.5}},
     "confidence_weights"),
    ({"confidence_weights": {"agreement": 1.0}}, "confidence_weights"),
    ({"ema_fast": 0.01, "ema_slow": 0.1}, "ema_slow"),
    ({"segments": "yes"}, "segments: expected true or false, got 'yes'"),   # not coerced
    ({"auto_off": 1}, "auto_off: expected true or false, got 1"),
])
def test_bad_values_name_the_field(kwargs, field):
    with pytest.raises(ConfigError) as e:
        HybridConfig(**kwargs)
    assert field in str(e.value)
    assert str(e.value).startswith("HybridConfig:")


def test_assignment_is_validated():
    cfg = HybridConfig()
    with pytest.raises(ConfigError, match="max_horizon"):
        cfg.max_horizon = 0


def test_from_dict_round_trip_and_type_check():
    cfg = HybridConfig(max_horizon=8, horizons=[2, 8])
    assert HybridConfig.from_dict(cfg.model_dump()) == cfg
    with pytest.raises(ConfigError, match="expected a table"):
        HybridConfig.from_dict([("max_horizon", 8)])  # type: ignore[arg-type]


def test_settings_that_cannot_act_are_named_with_their_switch():
    assert HybridConfig().inert_settings() == {}
    # segments are off by default: a changed segment setting would silently do nothing
    cfg = HybridConfig(confidence_threshold=0.7, predictor="rssm", warmup_steps=5)
    assert cfg.inert_settings() == {"confidence_threshold": "segments=True",
                                    "predictor": "segments=True"}
    assert HybridConfig(segments=True, confidence_threshold=0.7).inert_settings() == {}
    # a value equal to the default changes nothing either way, so it is not reported
    assert HybridConfig(confidence_threshold=0.55).inert_settings() == {}
    off = HybridConfig(jump_every=0, jump_alpha=0.3, jump_check="guard")
    assert off.inert_settings() == {"jump_check": "jump_every > 0", "jump_alpha": "jump_every > 0"}
    assert HybridConfig(jump_alpha=0.3).inert_settings() == {}
    # the calm pull acts only where no other rule sets the pull, and only with paired checks
    from hybrid_predict_trainer.config import CALM_SWITCH
    assert HybridConfig(jump_alpha_calm=0.7, jump_alpha_step=0.05).inert_settings() == {
        "jump_alpha_calm": CALM_SWITCH}
    assert HybridConfig(jump_alpha_calm=0.7, jump_alpha=0.7).inert_settings() == {
        "jump_alpha_calm": CALM_SWITCH}
    assert HybridConfig(jump_alpha_calm=0.7, jump_check="guard").inert_settings() == {
        "jump_alpha_calm": 'jump_check="paired"'}
    assert HybridConfig(jump_alpha_calm=0.7).inert_settings() == {}
    # with full_batch a check's pair is one step apart: the calm rule never sees a jump alone
    assert HybridConfig(jump_alpha_calm=0.7, full_batch=True).inert_settings() == {
        "jump_alpha_calm": "full_batch=False"}
    assert HybridConfig(full_batch=True).calm_pull() == 0.0 < HybridConfig().calm_pull()
    # full_batch acts on paired jump checks and on predicted segments, not on guard checks
    assert HybridConfig(full_batch=True).inert_settings() == {}
    assert HybridConfig(full_batch=True, segments=True, jump_check="guard").inert_settings() == {}
    fb = 'segments=True, or jump_every > 0 with jump_check="paired"'
    assert HybridConfig(full_batch=True, jump_check="guard").inert_settings() == {
        "full_batch": fb}
    assert HybridConfig(full_batch=True, jump_every=0).inert_settings() == {"full_batch": fb}
    assert HybridConfig(jump_alpha_calm=0.0, jump_alpha_step=0.05).inert_settings() == {}


def test_every_listed_setting_is_a_field():
    from hybrid_predict_trainer.config import JUMP_SETTINGS, SEGMENT_SETTINGS

    fields = set(HybridConfig.model_fields)
    assert set(SEGMENT_SETTINGS) <= fields and set(JUMP_SETTINGS) <= fields
    assert not set(SEGMENT_SETTINGS) & set(JUMP_SETTINGS)
    assert {"segments", "jump_every", "warmup_steps", "divergence_sigma"}.isdisjoint(
        set(SEGMENT_SETTINGS) | set(JUMP_SETTINGS))


def test_every_inert_setting_gets_a_warning_that_names_the_switch():
    """Each switch ``inert_settings`` can name has a reason, and the trainer's warning says
    both (a missing reason once made a valid config raise KeyError at construction)."""
    import itertools
    import warnings

    import torch
    from hybrid_predict_trainer import HybridTrainer
    from hybrid_predict_trainer.config import INERT_REASONS

    seen = set()
    for seg, every, check, fb, calm, step, alpha in itertools.product(
            (False, True), (0, 5), ("paired", "guard"), (False, True), (0.0, 0.65, 0.9),
            (0.0, 0.05), (0.5, 0.7)):
        cfg = HybridConfig(segments=seg, jump_every=every, jump_check=check, full_batch=fb,
                           jump_alpha_calm=calm, jump_alpha_step=step, jump_alpha=alpha,
                           confidence_threshold=0.7, monitor=False)
        inert = cfg.inert_settings()
        seen |= set(inert.values())
        model = torch.nn.Linear(2, 1)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            HybridTrainer(model, torch.optim.SGD(model.parameters(), lr=0.1), cfg)
        text = " ".join(str(w.message) for w in caught)
        for key, switch in inert.items():
            assert key in text and switch in text and INERT_REASONS[switch] in text, (cfg, key)
    assert seen == set(INERT_REASONS)      # every switch reachable, every reason used
