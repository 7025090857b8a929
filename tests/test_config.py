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
