"""Update predictors. Built-ins are registered by name; a user predictor is any object that
satisfies :class:`Predictor` and can be passed to ``HybridTrainer(predictor=...)``."""
from __future__ import annotations

from typing import TYPE_CHECKING

from .averaging import AveragingPredictor
from .base import Forecast, Observation, Predictor, cosine
from .continuation import ContinuationPredictor
from .extrapolation import ExtrapolationPredictor
from .rssm import RSSMLitePredictor

if TYPE_CHECKING:
    from ..config import HybridConfig


def build_predictor(config: "HybridConfig") -> Predictor:
    """Make the built-in predictor that ``config.predictor`` names."""
    if config.predictor == "continuation":
        return ContinuationPredictor(beta=config.continuation_beta)
    if config.predictor == "extrapolation":
        return ExtrapolationPredictor(window=config.extrapolation_window)
    if config.predictor == "rssm":
        return RSSMLitePredictor(members=config.rssm_members, rank=config.rssm_rank,
                                 window=config.rssm_window, hidden=config.rssm_hidden,
                                 seed=config.seed)
    if config.predictor == "averaging":
        return AveragingPredictor(beta=config.averaging_beta,
                                  min_observations=config.averaging_window)
    raise ValueError(f"unknown predictor {config.predictor!r}")


__all__ = ["AveragingPredictor", "Forecast", "Observation", "Predictor", "ContinuationPredictor",
           "ExtrapolationPredictor", "RSSMLitePredictor", "build_predictor", "cosine"]
