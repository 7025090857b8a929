import math

import pytest
import torch

from hybrid_predict_trainer.predictors import (ContinuationPredictor, ExtrapolationPredictor,
                                               Observation, Predictor, RSSMLitePredictor)


def obs(u: torch.Tensor, loss: float = 1.0) -> Observation:
    return Observation(update=u, loss=loss, grad_norm=1.0, lr=1e-3)


@pytest.mark.parametrize("pred", [ContinuationPredictor(), ExtrapolationPredictor(4),
                                  RSSMLitePredictor(members=3, rank=2, window=6, hidden=8)])
def test_builtins_satisfy_the_protocol(pred):
    assert isinstance(pred, Predictor)
    assert not pred.ready()


def test_continuation_beta0_replays_the_last_update():
    p = ContinuationPredictor(beta=0.0)
    p.observe(obs(torch.tensor([1.0, 0.0])))
    p.observe(obs(torch.tensor([0.0, 2.0])))
    assert p.ready()
    assert torch.equal(p.forecast(0).delta, torch.tensor([0.0, 2.0]))


def test_continuation_agreement_tracks_consistency():
    same, noisy = ContinuationPredictor(), ContinuationPredictor()
    g = torch.Generator().manual_seed(0)
    for _ in range(30):
        same.observe(obs(torch.ones(50)))
        noisy.observe(obs(torch.randn(50, generator=g)))
    assert same.agreement() > 0.95
    assert noisy.agreement() < 0.6


def test_extrapolation_recovers_a_linear_trajectory_slope():
    p = ExtrapolationPredictor(window=5)
    slope = torch.tensor([0.5, -1.0, 2.0])
    for _ in range(7):
        p.observe(obs(slope.clone()))
    p.begin_segment(4)
    assert torch.allclose(p.forecast(0).delta, slope, atol=1e-6)
    assert p.agreement() == pytest.approx(1.0, abs=1e-6)


def test_extrapolation_fits_the_least_squares_line():
    # theta_t = t^2 / 2 -> updates t + 0.5 ... the LSQ slope over positions 0..n is n/2 for this
    p = ExtrapolationPredictor(window=4)
    thetas = [0.5 * t * t for t in range(5)]
    for a, b in zip(thetas, thetas[1:]):
        p.observe(obs(torch.tensor([b - a])))
    t = torch.arange(5, dtype=torch.float64)
    th = torch.tensor(thetas, dtype=torch.float64)
    expected = float(((t - t.mean()) * (th - th.mean())).sum() / ((t - t.mean()) ** 2).sum())
    p.begin_segment(1)
    assert float(p.forecast(0).delta) == pytest.approx(expected, rel=1e-5)


def test_rssm_forecast_lies_in_the_span_of_recent_updates_and_memory_is_bounded():
    torch.manual_seed(0)
    basis = torch.randn(3, 40)
    p = RSSMLitePredictor(members=3, rank=2, window=6, hidden=8, train_iters=3)
    for i in range(20):
        c = torch.tensor([1.0 + 0.1 * i, 0.5, -0.2 * i % 1.0])
        p.observe(obs(c @ basis, loss=2.0 - 0.05 * i))
        assert p.buf is not None and p.buf.shape == (6, 40)  # bounded: window x P
    p.begin_segment(4)
    d = p.forecast(2).delta
    # residual after projecting onto the 3-dim basis is ~0
    q, _ = torch.linalg.qr(basis.T)
    resid = d - q @ (q.T @ d)
    assert float(resid.norm()) <= 1e-4 * max(float(d.norm()), 1e-8)
    assert 0.0 <= p.agreement() <= 1.0
    assert p.forecast(0).loss is not None and math.isfinite(p.forecast(0).loss)
    assert p.memory_copies() == 8.0


@pytest.mark.parametrize("make", [lambda: ContinuationPredictor(),
                                  lambda: ExtrapolationPredictor(4),
                                  lambda: RSSMLitePredictor(members=2, rank=2, window=5,
                                                            hidden=8, train_iters=2)])
def test_state_dict_round_trip_gives_identical_forecasts(make):
    a, b = make(), make()
    g = torch.Generator().manual_seed(3)
    for i in range(9):
        a.observe(obs(torch.randn(12, generator=g), loss=1.0 / (i + 1)))
    b.load_state_dict(a.state_dict())
    a.begin_segment(3)
    b.begin_segment(3)
    for i in range(3):
        assert torch.allclose(a.forecast(i).delta, b.forecast(i).delta)


# --- averaging ---------------------------------------------------------------------------

def test_averaging_offset_is_the_exact_weight_ema_minus_the_weights():
    """The predictor never sees the weights; its running offset must still equal the EMA of
    the iterates (started at the weights where the average restarted) minus the iterate."""
    from hybrid_predict_trainer.predictors import AveragingPredictor

    g = torch.Generator().manual_seed(3)
    p = AveragingPredictor(beta=0.8, min_observations=3)
    w = torch.randn(20, generator=g, dtype=torch.float64)
    ema = w.clone()
    for _ in range(12):
        u = 0.1 * torch.randn(20, generator=g, dtype=torch.float64) + 0.05
        w = w + u
        ema = 0.8 * ema + 0.2 * w
        p.observe(obs(u))
    assert p.ready()
    p.begin_segment(3)
    assert torch.allclose(p.forecast(0).delta, ema - w, atol=1e-12)


def test_averaging_jumps_once_then_follows_the_mean_update_and_restarts_the_average():
    from hybrid_predict_trainer.predictors import AveragingPredictor

    p = AveragingPredictor(beta=0.5, min_observations=2)
    for u in (torch.tensor([1.0, 0.0]), torch.tensor([1.0, 0.0]), torch.tensor([1.0, 2.0])):
        p.observe(obs(u))
    p.begin_segment(4)
    jump, follow = p.forecast(0).delta, p.forecast(1).delta
    assert not torch.equal(jump, follow)
    assert torch.equal(p.forecast(3).delta, follow)
    # an average behind a moving iterate points backwards along the motion
    assert jump[0] < 0 and follow[0] > 0
    # bias-corrected mean of the updates (weights 1/7, 2/7, 4/7)
    assert torch.allclose(follow, torch.tensor([1.0, 8.0 / 7.0]))
    assert not p.ready()          # the average restarts at the segment's end
    p.observe(obs(torch.tensor([1.0, 0.0])))
    assert not p.ready()
    p.observe(obs(torch.tensor([1.0, 0.0])))
    assert p.ready()


def test_averaging_state_round_trips_and_bad_arguments_are_refused():
    from hybrid_predict_trainer.predictors import AveragingPredictor

    with pytest.raises(ValueError, match="beta"):
        AveragingPredictor(beta=1.0)
    with pytest.raises(ValueError, match="min_observations"):
        AveragingPredictor(min_observations=1)
    a = AveragingPredictor(beta=0.7, min_observations=2)
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        a.observe(obs(torch.randn(8, generator=g)))
    a.begin_segment(2)
    a.observe(obs(torch.randn(8, generator=g)))
    b = AveragingPredictor()
    b.load_state_dict(a.state_dict())
    assert b.beta == 0.7 and b.count == a.count == 1
    assert torch.equal(a.forecast(0).delta, b.forecast(0).delta)
    assert torch.equal(a.forecast(1).delta, b.forecast(1).delta)
    assert b.agreement() == a.agreement()
    assert isinstance(b, Predictor)
