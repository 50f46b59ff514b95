import math

import torch

from nfcot.flow import ShallowFlow
from nfcot.model import gaussian_log_prob


def _flow(dim=3, slots=4, seed=0):
    torch.manual_seed(seed)
    f = ShallowFlow(dim, slots, blocks=3, width=16)
    # Non-zero output layers, so the test exercises real shifts and scales.
    for blk in f.blocks:
        torch.nn.init.normal_(blk.out.weight, 0, 0.5)
        torch.nn.init.normal_(blk.out.bias, 0, 0.5)
    return f.double().eval()


def test_inverse_of_forward_is_identity():
    f = _flow()
    e = torch.randn(5, 4, 3, dtype=torch.float64)
    u, _ = f(e)
    assert (u - e).abs().max() > 1e-2  # the flow is not the identity
    assert torch.allclose(f.inverse(u), e, atol=1e-5)


def test_log_det_equals_autograd_jacobian():
    f = _flow(dim=2, slots=3)
    e = torch.randn(1, 3, 2, dtype=torch.float64)
    _, logdet = f(e)
    jac = torch.autograd.functional.jacobian(lambda x: f(x.view(1, 3, 2))[0].reshape(-1), e.reshape(-1))
    assert abs(torch.linalg.slogdet(jac)[1].item() - logdet.item()) < 1e-6


def test_gaussian_log_prob_is_the_closed_form():
    u = torch.tensor([0.3, -1.2, 2.0], dtype=torch.float64)
    mu = torch.tensor([0.1, -1.0, 1.5], dtype=torch.float64)
    ls = torch.tensor([-0.5, 0.2, 0.0], dtype=torch.float64)
    want = sum(-0.5 * ((a - b) / math.exp(s)) ** 2 - s - 0.5 * math.log(2 * math.pi)
               for a, b, s in zip(u.tolist(), mu.tolist(), ls.tolist()))
    assert abs(gaussian_log_prob(u, mu, ls).item() - want) < 1e-12
