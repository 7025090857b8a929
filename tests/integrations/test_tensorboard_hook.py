"""The TensorBoard hook writes the trainer's figures; read back from the event file."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

from hybrid_predict_trainer import HybridConfig, HybridTrainer  # noqa: E402
from hybrid_predict_trainer.integrations.tensorboard import TensorBoardHook  # noqa: E402

from _support import batches, make_mlp  # noqa: E402


def test_event_file_holds_phase_loss_and_saved_backward(mnist_small, tmp_path):
    xtr, ytr, _, _ = mnist_small
    model = make_mlp(0)
    tb = TensorBoardHook(tmp_path / "tb")
    trainer = HybridTrainer(model, torch.optim.AdamW(model.parameters(), lr=2e-3),
                            HybridConfig(monitor=False, auto_off=False, confidence_threshold=0.0,
                                         warmup_steps=5, full_steps=3, segments=True),
                            hooks=[tb])
    results = [trainer.step(lambda: F.cross_entropy(model(x), y))
               for x, y in batches(xtr, ytr, 1)]
    tb.add_summary(trainer.summary(), "Training health: fine.")
    tb.close()

    acc = EventAccumulator(str(tmp_path / "tb"), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"hybrid/loss", "hybrid/phase_code", "hybrid/backward_saved",
            "hybrid/speedup_estimate"} <= tags
    codes = [e.value for e in acc.Scalars("hybrid/phase_code")]
    assert len(codes) == len(results)
    assert codes[0] == 0.0 and 2.0 in codes                       # warmup ... predict
    saved = acc.Scalars("hybrid/backward_saved")[-1].value
    assert saved == sum(r.predicted for r in results) > 0
    losses = {e.step: e.value for e in acc.Scalars("hybrid/loss")}
    first = results[0]
    assert losses[first.step] == pytest.approx(first.loss, rel=1e-6)
    texts = set(acc.Tags()["tensors"])
    assert {"hybrid/transition/text_summary", "hybrid/summary/text_summary"} <= texts
    transitions = acc.Tensors("hybrid/transition/text_summary")
    assert len(transitions) == len(trainer.transitions)
    assert b"warm-up done" in transitions[0].tensor_proto.string_val[0]


def test_an_event_that_is_no_phase_change_is_written_as_text(tmp_path):
    from hybrid_predict_trainer import StepResult
    from hybrid_predict_trainer.phases import Phase

    tb = TensorBoardHook(tmp_path / "tb")
    message = "step 7: jumps onto the slow weights paused: only 0 of the last 6 raised no loss"
    tb(StepResult(6, Phase.FULL, 0.5, predicted=False, backward=True))
    tb(StepResult(7, Phase.FULL, 0.5, predicted=False, backward=True, jumped=False,
                  event=message))
    tb.close()
    acc = EventAccumulator(str(tmp_path / "tb"), size_guidance={"tensors": 0})
    acc.Reload()
    events = acc.Tensors("hybrid/event/text_summary")
    assert [e.step for e in events] == [7]
    assert events[0].tensor_proto.string_val[0].decode() == message
