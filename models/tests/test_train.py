import math

import torch
import torch.nn.functional as F

from nfcot.train import text_nll


def _uniform_logits(B, S, V):
    return torch.zeros(B, S, V)


def test_row_weighting_gives_every_row_the_same_weight():
    V = 4
    logits = _uniform_logits(2, 4, V)
    logits[0, :, 0] = 5.0  # row 0 predicts token 0 confidently at every position
    targets = torch.full((2, 4), -100)
    targets[0, :] = 0  # four easy tokens
    targets[1, 3] = 1  # one token the uniform row 1 must guess
    easy = F.cross_entropy(logits[0], targets[0]).item()
    hard = math.log(V)
    assert abs(text_nll(logits, targets, "row").item() - (easy + hard) / 2) < 1e-6
    assert abs(text_nll(logits, targets, "token").item() - (4 * easy + hard) / 5) < 1e-6


def test_rows_without_targets_are_left_out():
    logits = _uniform_logits(3, 2, 5)
    targets = torch.full((3, 2), -100)
    targets[1, 0] = 2
    assert abs(text_nll(logits, targets, "row").item() - math.log(5)) < 1e-6


def test_closed_loop_share_ramps_then_holds():
    from nfcot.train import closed_loop_share
    assert closed_loop_share(0.4, 0.5, 0.0) == 0.0
    assert abs(closed_loop_share(0.4, 0.5, 0.25) - 0.2) < 1e-12
    assert closed_loop_share(0.4, 0.5, 0.9) == 0.4
    assert closed_loop_share(0.5, 0.0, 0.0) == 0.5  # no ramp: the full share from the start


def test_readback_scores_the_positions_fed_each_thought_but_the_last():
    from nfcot.train import readback_loss
    V, K = 6, 3
    logits = torch.zeros(3, 8, V)
    rows = torch.tensor([0, 2])
    slot_pos = torch.tensor([[2, 3, 4], [4, 5, 6]])
    steps = torch.tensor([[[0, 1], [0, 2], [0, 3]], [[0, 4], [0, 5], [0, 0]]])
    for r, ps, st in zip(rows.tolist(), slot_pos.tolist(), steps.tolist()):
        for p, (_, value) in zip(ps[:-1], st[:-1]):
            logits[r, p, value] = 50.0  # right at every scored position
    assert readback_loss(logits, rows, slot_pos, steps).item() < 1e-6
    logits[2, 6] = 0.0  # the last thought's position is not scored
    logits[1] = 0.0     # nor rows that are not latent
    assert readback_loss(logits, rows, slot_pos, steps).item() < 1e-6
    logits[0, 3] = 0.0  # one scored position now guesses uniformly: mean over 4 positions
    assert abs(readback_loss(logits, rows, slot_pos, steps).item() - math.log(V) / 4) < 1e-4


def test_lookahead_scores_every_thought_predicting_position_against_the_next_value():
    from nfcot.train import lookahead_loss
    V, H = 5, 4  # token 4 has no hidden direction
    head = torch.nn.Linear(H, V, bias=False)
    with torch.no_grad():
        head.weight.copy_(torch.eye(V, H) * 40.0)  # hidden basis vector i -> token i
    steps = torch.tensor([[[0, 1], [0, 2], [0, 4]]])  # values 1, 2, then <eot> stand-in 4
    hidden = torch.zeros(1, 3, H)
    hidden[0, 0, 1] = hidden[0, 1, 2] = 1.0  # slots 0 and 1 name their values with certainty
    # Slot 2's hidden state is zero: all logits equal, so it costs log V; the mean is over 3 slots.
    assert abs(lookahead_loss(head, hidden, steps).item() - math.log(V) / 3) < 1e-6
    hidden[0, 0] = 0.0
    hidden[0, 0, 3] = 1.0  # slot 0 now names 3 instead of 1
    assert abs(lookahead_loss(head, hidden, steps).item() - (40.0 + math.log(V)) / 3) < 1e-4
