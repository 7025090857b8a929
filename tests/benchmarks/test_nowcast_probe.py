"""The learned-nowcaster probe: its features, its fit, and that its jumps really move the
weights (unchecked) or are undone when the check says the loss rose."""
from __future__ import annotations

import torch
from torch import nn

from benchmarks import nowcast_probe as probe


def test_features_are_scale_free_changes_over_the_intervals() -> None:
    gen = torch.Generator().manual_seed(0)
    snaps = torch.randn(probe.HISTORY + 1, 50, generator=gen).cumsum(0)
    x, scale = probe.features(snaps)
    x3, scale3 = probe.features(3.0 * snaps + 7.0)
    assert x.shape == (50, probe.HISTORY)
    torch.testing.assert_close(x3, x)
    torch.testing.assert_close(scale3, 3.0 * scale)
    torch.testing.assert_close(x * scale[:, None], (snaps[1:] - snaps[:-1]).T)


def test_nowcaster_learns_to_continue_a_steady_drift() -> None:
    """On trajectories that drift at a constant rate (plus noise) the right forecast is the
    mean change times the intervals ahead; the fitted net must get far closer than 'no change'."""
    gen = torch.Generator().manual_seed(1)
    rate = torch.randn(400, generator=gen)
    t = torch.arange(12, dtype=torch.float32)[:, None]
    traj = rate * t + 0.1 * torch.randn(12, 400, generator=gen)
    x, y = probe.samples(traj, per_point=400, gen=gen)
    net = probe.fit(x, y, iters=300)
    quality = probe.fit_report(net, x, y)
    assert quality["nowcaster"] < 0.25 * quality["zero"]
    assert quality["linear"] < 0.25 * quality["zero"]


class _Constant(nn.Module):
    """A 'nowcaster' that forecasts a huge change for every parameter."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full((len(x), 1), 50.0)


def test_jumps_are_applied_unchecked_and_undone_when_the_loss_rises() -> None:
    net = _Constant()
    plain = probe.run_variant("tabular-fullbatch", 0.008, 0, "adamw", net, every=10)
    wild = probe.run_variant("tabular-fullbatch", 0.008, 0, "nowcast", net, every=10)
    checked = probe.run_variant("tabular-fullbatch", 0.008, 0, "nowcast-checked", net,
                                every=10)
    # 40 steps, history full at step 20: jumps at 20, 30, 40
    assert wild["jumps"] == checked["jumps"] == 3 and plain["jumps"] == 0
    assert wild["undone"] == 0 and checked["undone"] == 3
    assert wild["curve"][-1] > 1.5 * plain["curve"][-1]      # the jump really moved weights
    assert checked["curve"] == plain["curve"]                # undone: AdamW's run exactly


def test_compare_scores_every_variant_against_the_same_seeds_adamw() -> None:
    rows = probe.compare("tabular-fullbatch", 0.008, seeds=1, net=_Constant(), every=10)
    assert set(rows) == set(probe.VARIANTS)
    assert rows["adamw"]["reached"] == "1/1" and rows["adamw"]["steps_to_target"] is not None
    assert rows["nowcast"]["reached"] == "0/1" and rows["nowcast"]["steps_to_target"] is None
    assert rows["nowcast-checked"]["undone"] == rows["nowcast-checked"]["jumps"] == 3
