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
    for i in range(30):
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
