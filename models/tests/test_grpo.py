import math

import torch

from nfcot.grpo import group_advantages, grpo_loss, k3


def test_group_advantages_by_hand():
    r = torch.tensor([[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0], [1.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    a = group_advantages(r, eps=0.0 + 1e-12)
    # Group 0: mean 0.5, population std 0.5 -> +-1. Group 1: all equal -> 0.
    assert torch.allclose(a[0], torch.tensor([1.0, -1.0, -1.0, 1.0], dtype=torch.float64))
    assert torch.equal(a[1], torch.zeros(4, dtype=torch.float64))
    # Group 2: mean 0.25, std sqrt(0.1875) = 0.4330127.
    s = math.sqrt(0.1875)
    assert torch.allclose(a[2], torch.tensor([0.75 / s, -0.25 / s, -0.25 / s, -0.25 / s], dtype=torch.float64))


def test_grpo_loss_fixed_batch_by_hand():
    # Four trajectories: ratios e^0.1, e^-0.5, 1, e^0.3; advantages 1, 1, -2, -1; clip 0.2.
    logp_old = torch.tensor([-10.0, -20.0, -5.0, -7.0], dtype=torch.float64)
    logp_new = logp_old + torch.tensor([0.1, -0.5, 0.0, 0.3], dtype=torch.float64)
    adv = torch.tensor([1.0, 1.0, -2.0, -1.0], dtype=torch.float64)
    loss, st = grpo_loss(logp_new.requires_grad_(), logp_old, adv, clip_eps=0.2)
    # p0: min(1.10517*1, 1.10517*1) = 1.105171 (inside the clip range) -> -1.105171
    # p1: ratio 0.606531 < 0.8: min(0.606531, 0.8) = 0.606531 -> -0.606531 (pessimistic: unclipped)
    # p2: ratio 1: min(-2, -2) = -2 -> 2
    # p3: ratio 1.349859 > 1.2: min(-1.349859, -1.2) = -1.349859 -> 1.349859
    want = (-math.exp(0.1) - math.exp(-0.5) + 2.0 + math.exp(0.3)) / 4
    assert abs(loss.item() - want) < 1e-12
    assert abs(want - 0.40953933) < 1e-6
    assert st["clipped"] == 0.5
    # Gradient: d/dlogp_new of -min(...)/4 is -ratio*A/4 where the unclipped term is the min, else 0.
    loss.backward()
    g = logp_new.grad
    assert torch.allclose(g, torch.tensor([-math.exp(0.1) / 4, -math.exp(-0.5) / 4, 2 / 4, math.exp(0.3) / 4], dtype=torch.float64))


def test_grpo_loss_clipped_term_has_no_gradient():
    # Ratio e^0.5 > 1.2 with A = +1: the clipped term is the min, constant in logp_new.
    logp_new = torch.tensor([0.5], dtype=torch.float64, requires_grad=True)
    loss, _ = grpo_loss(logp_new, torch.zeros(1, dtype=torch.float64), torch.ones(1, dtype=torch.float64), clip_eps=0.2)
    assert abs(loss.item() + 1.2) < 1e-12
    loss.backward()
    assert logp_new.grad.item() == 0.0


def test_kl_term_by_hand():
    ref = torch.tensor([-1.0, -2.0], dtype=torch.float64)
    new = torch.tensor([-1.5, -2.0], dtype=torch.float64)
    k = k3(ref, new)
    assert abs(k[0].item() - (math.exp(0.5) - 0.5 - 1)) < 1e-12 and k[1].item() == 0.0
    logp = torch.zeros(2, dtype=torch.float64)
    loss, st = grpo_loss(logp, logp, torch.zeros(2, dtype=torch.float64), kl=k, kl_coef=0.1)
    assert abs(loss.item() - 0.1 * (math.exp(0.5) - 1.5) / 2) < 1e-12
    assert abs(st["kl"] - (math.exp(0.5) - 1.5) / 2) < 1e-12


def test_select_groups_prefers_groups_with_signal_in_draw_order():
    from nfcot.grpo import select_groups
    r = torch.tensor([[1.0, 1.0], [0.0, 1.0], [0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]], dtype=torch.float64)
    assert select_groups(r, 2) == [1, 3]
    assert select_groups(r, 3) == [1, 3, 5]
    # Fewer groups with signal than the batch takes: filled with the first all-equal ones.
    assert select_groups(r, 5) == [1, 3, 5, 0, 2]
    assert select_groups(r, 10) == [1, 3, 5, 0, 2, 4]
