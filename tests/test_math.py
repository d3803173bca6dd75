import math

import torch
import torch.nn.functional as F

from tdmpc_lib import math as tm


def test_symlog_symexp_inverse():
    x = torch.tensor([-1000.0, -3.5, -1e-3, 0.0, 2.0, 12345.0])
    assert torch.allclose(tm.symexp(tm.symlog(x)), x, rtol=1e-5)
    assert torch.allclose(tm.symlog(torch.tensor([math.e - 1])), torch.tensor([1.0]))


def test_two_hot_places_mass_on_two_neighbouring_bins():
    x = torch.tensor([[tm.symexp(torch.tensor(0.3)).item()]])  # symlog(x) = 0.3 -> between bins 51, 52
    t = tm.two_hot(x, 101, -10, 10)
    assert t.shape == (1, 101)
    nz = t[0].nonzero().flatten().tolist()
    assert nz == [51, 52]
    assert torch.allclose(t[0, 51], torch.tensor(0.5), atol=1e-4)
    assert torch.allclose(t.sum(), torch.tensor(1.0))


def test_two_hot_edge_at_vmax_wraps_with_zero_weight():
    x = torch.tensor([[1e9]])  # clamped to symlog 10 exactly -> last bin, offset 0
    t = tm.two_hot(x, 101, -10, 10)
    assert t[0, 100] == 1.0 and t[0, 0] == 0.0


def test_two_hot_inv_recovers_scalar():
    x = torch.tensor([[-250.0], [-1.0], [0.0], [0.7], [42.0]])
    logits = torch.log(tm.two_hot(x, 101, -10, 10) + 1e-12)
    assert torch.allclose(tm.two_hot_inv(logits, 101, -10, 10), x, rtol=1e-3, atol=1e-3)


def test_soft_ce_is_minimal_at_the_target():
    x = torch.tensor([[3.0]])
    good = torch.log(tm.two_hot(x, 101, -10, 10) + 1e-9)
    bad = torch.zeros(1, 101)
    assert tm.soft_ce(good, x, 101, -10, 10) < tm.soft_ce(bad, x, 101, -10, 10)
    assert torch.allclose(tm.soft_ce(bad, x, 101, -10, 10), torch.tensor([[math.log(101)]]))


def test_gaussian_logprob_counts_the_constant_per_dimension():
    eps, log_std = torch.zeros(1, 6), torch.zeros(1, 6)
    assert torch.allclose(tm.gaussian_logprob(eps, log_std), torch.tensor([[-6 * tm.LOG_2PI_HALF]]))


def test_mish_fast_form_equals_torch_mish():
    x = torch.cat([torch.linspace(-100, 100, 4001), torch.tensor([-1e4, -30.0, 0.0, 19.9, 20.0, 20.1, 1e4])])
    with torch.no_grad():
        fast = tm.mish_inference(x)
        assert torch.allclose(fast, F.mish(x), atol=2e-6, rtol=1e-6)
        assert torch.isfinite(fast).all() and fast[-1] == 1e4
        xb = x.bfloat16()  # bf16: within one bf16 rounding of the exact value
        assert torch.allclose(tm.mish_inference(xb).float(), F.mish(x), rtol=1e-2, atol=1e-2)
        assert tm.mish_inference(x.half()).dtype == torch.float16  # fp16 falls back to F.mish
        assert torch.equal(x, torch.cat([torch.linspace(-100, 100, 4001),
                                         torch.tensor([-1e4, -30.0, 0.0, 19.9, 20.0, 20.1, 1e4])]))  # not in place
    y = x.clone().requires_grad_()
    tm.mish_inference(y).sum().backward()  # with autograd: torch's own Mish and its gradient
    assert y.grad is not None and torch.isfinite(y.grad).all()
