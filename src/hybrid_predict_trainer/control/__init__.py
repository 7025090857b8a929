"""Decision-making pieces of the trainer: confidence gate, horizon bandit, divergence, EMAs."""
from .bandit import LinUCB
from .confidence import ConfidenceGate, GateReport
from .divergence import DivergenceMonitor, Level, Signal
from .ema import LossTracker

__all__ = ["LinUCB", "ConfidenceGate", "GateReport", "DivergenceMonitor", "Level", "Signal", "LossTracker"]
