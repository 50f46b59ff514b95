import math

import pytest
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
    keep = torch.tensor([[False, True, True]])  # slot 0 (now wrong) not scored: mean over 2 slots
    assert abs(lookahead_loss(head, hidden, steps, keep).item() - math.log(V) / 2) < 1e-6


def test_counterfactual_rows_change_one_latent_step_and_recompute_the_rest():
    import random
    from nfcot.task import sample_program
    from nfcot.train import counterfactual_rows
    rng = random.Random(5)
    progs = [sample_program(rng, 20) for _ in range(400)]
    modes = ["latent", "explicit"] * 200
    out, slots = counterfactual_rows(progs, modes, 1.0, random.Random(9), 20)
    assert [p.source() for p in out] == [p.source() for p in progs]
    assert all(j == -1 and o is p for o, p, j, m in zip(out, progs, slots, modes) if m != "latent")
    changed = [(o, p, j) for o, p, j in zip(out, progs, slots) if j >= 0]
    assert len(changed) > 150  # nearly every latent row finds an in-range value within 10 draws
    for o, p, j in changed:
        assert 0 <= j < len(p.steps) - 1
        assert [s.value for s in o.steps[:j]] == [s.value for s in p.steps[:j]]
        assert o.steps[j].value != p.steps[j].value
        env = {p.steps[j].var: o.steps[j].value}
        for s in o.steps[:j]:
            env[s.var] = s.value
        for s in o.steps[j + 1:]:  # later steps follow from the changed value, as Python computes them
            env[s.var] = eval(s.expr, {}, dict(env))
            assert env[s.var] == s.value and -20 <= s.value <= 20
    none_out, none_slots = counterfactual_rows(progs, modes, 0.0, random.Random(9), 20)
    assert none_out == progs and set(none_slots) == {-1}


def test_operand_tokens_name_each_statements_operand_values():
    from nfcot import tokenizer as tk
    from nfcot.data import build_batch, operand_tokens
    from nfcot.task import Program, Step, with_value
    prog = Program((Step("a", "5", "", 5), Step("b", "a * 3", "5 * 3", 15), Step("c", "b - a", "15 - 5", 10)))
    T = tk.TOKEN_ID
    assert operand_tokens(prog, 4) == [[-100, -100], [T["5"], T["3"]], [T["15"], T["5"]], [-100, -100]]
    cf = with_value(prog, 1, -2, 20)  # b = -2: c reads it
    assert operand_tokens(cf, 3)[2] == [T["-2"], T["5"]]
    b = build_batch([prog, cf], ["explicit", "latent"], 6)
    assert b["operands"].tolist() == [operand_tokens(cf, 6)]


def test_operand_loss_scores_both_operands_of_scored_slots_only():
    from nfcot.train import operand_loss
    V, H = 4, 8
    head = torch.nn.Linear(H, 2 * V, bias=False)
    with torch.no_grad():
        head.weight.zero_()
        head.weight[1, 0] = head.weight[V + 2, 0] = 60.0  # hidden dim 0 -> operands (1, 2)
    hidden = torch.zeros(1, 2, H)
    hidden[0, 0, 0] = 3.0  # any scale: normalised to RMS 1, so dim 0 becomes sqrt(H)
    operands = torch.tensor([[[1, 2], [-100, -100]]])
    assert operand_loss(head, hidden, operands).item() < 1e-6
    operands[0, 0, 1] = 3  # second operand now wrong: (0 + 60 sqrt(H)) / 2 over the two scored targets
    assert abs(operand_loss(head, hidden, operands).item() - 30.0 * math.sqrt(H)) < 1e-3


def test_key_loss_names_each_thoughts_variable_and_skips_slots_past_the_end():
    from nfcot import tokenizer as tk
    from nfcot.task import Program, Step
    from nfcot.train import key_loss
    from nfcot.vae import step_tokens
    V, H = len(tk.VOCAB), 8
    a, b = tk.TOKEN_ID["a"], tk.TOKEN_ID["b"]
    head = torch.nn.Linear(H, V, bias=False)
    with torch.no_grad():
        head.weight.zero_()
        head.weight[a, 0] = head.weight[b, 1] = 60.0  # hidden dim 0 -> a, dim 1 -> b
    steps = torch.tensor([step_tokens(Program((Step("a", "5", "", 5), Step("b", "a * 3", "5 * 3", 15))), 3)])
    hidden = torch.zeros(1, 3, H)
    hidden[0, 0, 0] = hidden[0, 1, 1] = 2.0  # normalised to RMS 1: the set dim becomes sqrt(H)
    hidden[0, 2, 0] = 2.0  # slot 3 is past the end (<eot>): whatever it names is not scored
    assert key_loss(head, hidden, steps).item() < 1e-6
    hidden[0, 1] = torch.flip(hidden[0, 1], (0,))  # slot 2 now names neither: logits all 0, NLL log V
    assert abs(key_loss(head, hidden, steps).item() - math.log(V) / 2) < 1e-4


def test_taps_hold_each_layers_output_and_leave_the_result_unchanged():
    from nfcot import tokenizer as tk
    from nfcot.model import ModelConfig, NFCoTModel
    cfg = ModelConfig(vocab_size=len(tk.VOCAB), hidden_size=32, num_layers=3, num_heads=4, num_kv_heads=2,
                      intermediate_size=64)
    model = NFCoTModel(cfg).eval()
    ids = torch.randint(6, cfg.vocab_size, (2, 5))
    args = (ids, torch.zeros(2, 5, cfg.thought_dim), torch.zeros(2, 5), torch.arange(5)[None].expand(2, 5))
    taps = []
    h, _ = model(*args, taps=taps)
    assert len(taps) == 3 and torch.equal(taps[-1], h)
    assert torch.equal(model(*args)[0], h)


def test_flow_nll_is_the_plain_nll_without_changes_and_leaves_the_flow_to_true_rows():
    from nfcot.model import gaussian_log_prob
    from nfcot.train import flow_nll
    g = torch.Generator().manual_seed(0)
    L, K, D = 3, 4, 2
    u = torch.randn(L, K, D, generator=g, requires_grad=True)
    logdet = torch.randn(L, generator=g, requires_grad=True)
    mu, ls = torch.randn(L, K, D, generator=g), torch.randn(L, K, D, generator=g) * 0.1
    every = torch.ones(L, K, dtype=torch.bool)
    none = torch.zeros(L, dtype=torch.bool)
    plain = -((gaussian_log_prob(u, mu, ls).sum(-1) + logdet) / (K * D)).mean()
    assert torch.allclose(flow_nll(u, logdet, mu, ls, every, none), plain)
    changed = torch.tensor([False, True, False])
    scored = every.clone()
    scored[1, :2] = False  # row 1 changed at slot 1: slots 2, 3 scored
    loss = flow_nll(u, logdet, mu, ls, scored, changed)
    lp = gaussian_log_prob(u, mu, ls)
    want = -((lp[0].sum() + logdet[0]) + lp[1, 2:].sum() + (lp[2].sum() + logdet[2])) / (K * D) / L
    assert torch.allclose(loss, want)
    loss.backward()
    assert torch.count_nonzero(u.grad[1]) == 0 and logdet.grad[1] == 0  # no flow gradient from row 1
    assert torch.count_nonzero(u.grad[0]) == K * D and logdet.grad[0] != 0


def test_stage2_lengths_thin_the_stream_to_the_given_weights():
    import random
    import pytest
    from collections import Counter
    from nfcot.task import train_stream
    from nfcot.train import keep_length, length_weights
    assert length_weights("") is None
    assert length_weights("1,1,2,3,4") == [1.0, 1.0, 2.0, 3.0, 4.0]
    for bad in ("1,2,3", "1,1,1,1,-1", "0,0,0,0,0"):
        with pytest.raises(SystemExit, match="--stage2-lengths"):
            length_weights(bad)
    stream, rng = train_stream(0), random.Random(3)
    seen, kept = Counter(), Counter()
    while sum(kept.values()) < 4000:
        p = next(stream)
        seen[len(p.steps)] += 1
        if keep_length(p, [0.0, 1.0, 0.0, 1.0, 2.0], rng):
            kept[len(p.steps)] += 1
    assert set(kept) == {3, 5, 6}  # weight 0: never kept
    # a program of n statements is kept with probability w_n / max w
    for n, share in ((3, 0.5), (5, 0.5), (6, 1.0)):
        assert abs(kept[n] / seen[n] - share) < 0.04, (n, kept[n], seen[n])
    p = next(stream)
    assert keep_length(p, None, rng)  # no weights: the task's own draw


def test_grown_model_computes_what_the_checkpoint_did():
    from nfcot.model import ModelConfig, NFCoTModel
    from nfcot.train import grow_layers
    torch.manual_seed(0)
    model = NFCoTModel(ModelConfig(num_layers=3, hidden_size=32, intermediate_size=64, num_thoughts=2, thought_dim=4))
    grown = grow_layers(model, 2, at=1)
    assert grown.config.num_layers == 5 and model.config.num_layers == 3
    assert torch.equal(grown.model.layers[0].self_attn.q_proj.weight, model.model.layers[0].self_attn.q_proj.weight)
    assert torch.equal(grown.model.layers[3].mlp.up_proj.weight, model.model.layers[1].mlp.up_proj.weight)
    assert torch.equal(grown.model.layers[4].mlp.down_proj.weight, model.model.layers[2].mlp.down_proj.weight)
    assert not grown.model.layers[1].mlp.down_proj.weight.any()
    assert grown.model.layers[2].self_attn.q_proj.weight.abs().sum() > 0  # the rest trains from random
    ids = torch.randint(0, 200, (2, 7))
    is_thought = torch.zeros(2, 7, dtype=torch.bool)
    is_thought[:, 3:5] = True
    thoughts = torch.randn(2, 7, 4)
    pos = torch.arange(7)[None].expand(2, 7)
    taps = []
    h_old, _ = model(ids, thoughts, is_thought, pos)
    h_new, past = grown(ids, thoughts, is_thought, pos, taps=taps)
    assert len(past) == 5 and len(taps) == 5
    assert torch.allclose(h_old, h_new, atol=1e-6)
    with pytest.raises(ValueError, match="after layer 4 of 3"):
        grow_layers(model, 1, at=4)
    with pytest.raises(ValueError, match="cannot insert 0"):
        grow_layers(model, 0)
    with pytest.raises(ValueError, match="after layer 0"):
        grow_layers(model, 1, at=0)  # layer 0's positional heads must stay on layer 0


def test_stage2_negatives_keep_programs_with_a_negative_value_that_many_times_as_often():
    import random
    from nfcot.task import train_stream
    from nfcot.train import keep_negative
    stream, rng = train_stream(0), random.Random(5)
    seen = {True: 0, False: 0}
    kept = {True: 0, False: 0}
    for _ in range(6000):
        p = next(stream)
        neg = any(s.value < 0 for s in p.steps)
        seen[neg] += 1
        kept[neg] += keep_negative(p, 4.0, rng)
    assert seen[True] > 500 and seen[False] > 500  # both kinds are drawn
    assert kept[True] == seen[True]  # every program with a negative value is kept
    assert abs(kept[False] / seen[False] - 0.25) < 0.03, kept
    assert all(keep_negative(next(stream), 1.0, rng) for _ in range(200))  # weight 1: the task's draw


def test_a_short_run_through_every_stage_lowers_the_loss_on_a_fixed_batch(tmp_path):
    """train.main end to end on a tiny model: VAE, text, stage 1 and stage 2 with every optional loss.
    The text loss on a fixed batch (validation programs, both text modes) falls from the seeded
    initial model's, and the checkpoint holds what export and the probes read."""
    import torch
    from nfcot import tokenizer as tk
    from nfcot.data import build_batch
    from nfcot.model import ModelConfig, NFCoTModel
    from nfcot.task import split
    from nfcot.train import main, text_nll
    main(["--out", str(tmp_path), "--hidden", "32", "--layers", "2", "--vae-steps", "30", "--text-steps", "10",
          "--stage1-steps", "2", "--stage2-steps", "6", "--batch", "16", "--eval-every", "1000", "--threads", "1",
          "--lr", "3e-2", "--readback", "1", "--ahead", "1", "--counterfactual", "0.5", "--operands", "1",
          "--operand-layer", "1", "--closed-loop", "0.3"])
    ck = torch.load(tmp_path / "ckpt.pt")
    assert {"config", "model", "flow", "vae", "ahead", "operands", "keys", "history", "m"} <= set(ck)
    cfg = ModelConfig.from_dict(ck["config"])
    torch.manual_seed(0)  # main seeds, then builds the model first: its initial weights
    before = NFCoTModel(cfg).eval()
    after = NFCoTModel(cfg)
    after.load_state_dict(ck["model"])
    after.eval()
    progs = split("validation", 32, 20)
    b = build_batch(progs, ["explicit", "none"] * 16, cfg.num_thoughts)

    def loss(model):
        with torch.no_grad():
            h, _ = model(b["ids"], torch.zeros(*b["ids"].shape, cfg.thought_dim), b["is_thought"], b["positions"], b["key_mask"])
            return text_nll(model.heads(h)[0], b["targets"], "token").item()
    l0, l1 = loss(before), loss(after)
    assert abs(l0 - __import__("math").log(len(tk.VOCAB))) < 0.05  # uniform at the start
    assert l1 < l0 - 0.1, (l0, l1)
    h = ck["history"][-1]
    assert h["step"] == 18 and h["nf_loss"] > 0 and h["text_loss"] < l0
