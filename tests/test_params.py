import pytest
import torch

from hybrid_predict_trainer import ConfigError
from hybrid_predict_trainer.params import FlatParams


def _params():
    torch.manual_seed(0)
    return [torch.nn.Parameter(torch.randn(3, 4)), torch.nn.Parameter(torch.randn(5))]


def test_read_write_add_diff_are_exact():
    ps = _params()
    fp = FlatParams(ps)
    assert fp.numel == 17
    snap = fp.flatten()
    delta = torch.randn(17)
    fp.add_(delta)
    assert torch.allclose(torch.cat([p.detach().reshape(-1) for p in ps]), snap + delta)
    out = fp.new_buffer()
    fp.diff_into(out, snap)
    assert torch.allclose(out, delta)
    fp.write_from(snap)
    assert torch.equal(fp.flatten(), snap)  # rollback is bit-exact


def test_mixed_dtypes_use_the_slow_path():
    ps = [torch.nn.Parameter(torch.randn(4)), torch.nn.Parameter(torch.randn(2).double())]
    fp = FlatParams(ps)
    snap = fp.flatten()
    fp.add_(torch.ones(6))
    fp.write_from(snap)
    assert torch.allclose(fp.flatten(), snap)


def test_grad_norm_and_finiteness():
    ps = _params()
    fp = FlatParams(ps)
    for p in ps:
        p.grad = torch.ones_like(p)
    assert float(fp.grad_norm()) == pytest.approx(17 ** 0.5)
    assert fp.all_finite()
    with torch.no_grad():
        ps[1][2] = float("nan")
    assert not fp.all_finite()
    assert fp.first_nonfinite({id(ps[1]): "b"}) == "b"


def test_no_parameters_is_a_config_error():
    with pytest.raises(ConfigError, match="no trainable parameters"):
        FlatParams([])


def test_grad_norm_of_half_gradients_does_not_overflow():
    # a norm taken in float16 overflows past 65504; the trainer's NaN/divergence checks would
    # then see an exploding gradient that is not there
    ps = [torch.nn.Parameter(torch.zeros(1000, dtype=torch.float16))]
    ps[0].grad = torch.full((1000,), 3000.0, dtype=torch.float16)
    norm = FlatParams(ps).grad_norm()
    assert torch.isfinite(norm)
    assert float(norm) == pytest.approx(3000.0 * 1000 ** 0.5, rel=1e-3)


def test_grad_norm_of_a_sparse_gradient_is_its_dense_norm():
    # nn.Embedding(sparse=True) hands the trainer a sparse COO gradient with repeated rows;
    # the fused norm refuses it, and an uncoalesced norm would miss the repeats' sums
    emb = torch.nn.Embedding(20, 4, sparse=True)
    lin = torch.nn.Linear(4, 1)
    fp = FlatParams([emb.weight, *lin.parameters()])
    idx = torch.tensor([3, 3, 7, 3, 11])
    lin(emb(idx)).sum().backward()
    assert emb.weight.grad.is_sparse and not emb.weight.grad.is_coalesced()
    dense = torch.cat([emb.weight.grad.to_dense().reshape(-1),
                       *(p.grad.reshape(-1) for p in lin.parameters())])
    assert float(fp.grad_norm()) == pytest.approx(float(dense.norm()), rel=1e-6)
    frm = fp.flatten()
    to = frm + torch.linspace(-1.0, 1.0, fp.numel)
    assert fp.grad_dot(to, frm) == pytest.approx(float(dense.double() @ (to - frm).double()),
                                                 rel=1e-6)


def test_grads_finite_is_one_fused_check_that_leaves_the_gradients_as_they_are():
    ps = _params()
    fp = FlatParams(ps)
    assert fp.grads_finite() is True                  # no gradient yet
    for p in ps:
        p.grad = torch.randn_like(p)
    ps[0].grad[0, 0] = -0.0
    ps[1].grad[0] = 1e-40                             # a subnormal survives the x1.0 pass
    before = [p.grad.clone() for p in ps]
    assert fp.grads_finite() is True
    assert all(torch.equal(a, p.grad) and torch.equal(a.signbit(), p.grad.signbit())
               for a, p in zip(before, ps))
    ps[1].grad[3] = float("inf")
    assert fp.grads_finite() is False
    ps[1].grad[3] = 0.0
    assert fp.grads_finite() is True                  # the flag does not stick
    ps[0].grad = torch.ones(3, 4).to_sparse()
    assert fp.grads_finite() in (None, True)          # sparse: fused or left to the norm
