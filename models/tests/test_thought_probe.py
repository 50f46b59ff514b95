import torch

from nfcot import tokenizer as tk
from nfcot.flow import ShallowFlow
from nfcot.model import ModelConfig, NFCoTModel
from nfcot.task import split
from nfcot.thought_probe import thought_probe
from nfcot.vae import StepVAE

from .fakes import Peek


def _parts():
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=len(tk.VOCAB), hidden_size=32, num_layers=1, num_heads=4, num_kv_heads=2,
                      intermediate_size=64)
    return (NFCoTModel(cfg).eval(), ShallowFlow(cfg.thought_dim, cfg.num_thoughts).eval(),
            StepVAE(cfg.vocab_size, cfg.thought_dim).eval())


def _flow():
    torch.manual_seed(1)
    flow = ShallowFlow(16, 6)
    for blk in flow.blocks:  # not the identity: the probe must go through the inverse flow
        torch.nn.init.normal_(blk.out.weight, 0.0, 0.1)
    return flow.eval()


def test_counts_real_steps_per_slot_and_scores_a_known_model(trained_vae):
    """Peek names the next token and puts out the next thought it is fed: the answer is right with
    any thoughts, each next thought decodes as well as the VAE decodes the true one (the trained VAE
    gets every step of slots 0-1 right and most later ones), whoever's earlier thoughts it sees, and
    a counterfactual thought decodes to the counterfactual step (it is fed), never the prompt's."""
    progs = split("validation", 60, 20)
    out = thought_probe(Peek(), _flow(), trained_vae[0], progs)
    assert out["steps_by_slot"] == [sum(len(p.steps) > t for p in progs) for t in range(6)] == [60, 60, 50, 38, 29, 18]
    assert out["answer_accuracy_own_thoughts"] == out["answer_accuracy_other_thoughts"] == 1.0
    want = [1.0, 1.0, 0.98, 0.921, 0.931, 0.833]  # 60/60, 60/60, 49/50, 35/38, 27/29, 15/18
    assert out["next_thought_accuracy_by_slot"] == want
    assert out["next_thought_accuracy_by_slot_other_earlier_thoughts"] == want
    assert out["counterfactual_altered_thoughts"] == 82
    assert out["counterfactual_thought_follows_earlier_thoughts"] == 0.878  # 72 / 82
    assert out["counterfactual_thought_follows_prompt"] == 0.0


def test_a_model_that_ignores_everything_scores_nothing(trained_vae):
    """The seeded random model: its answers and NF means do not depend on the program."""
    progs = split("validation", 40, 20)
    out = thought_probe(*_parts(), progs)
    assert out["answer_accuracy_own_thoughts"] == out["answer_accuracy_other_thoughts"] == 0.0
    assert out["next_thought_accuracy_by_slot"] == [0.0] * 6
    assert out["steps_by_slot"][:2] == [40, 40]


def test_another_programs_thoughts_change_nothing_when_all_programs_are_the_same():
    prog = split("validation", 40, 20)[0]
    out = thought_probe(*_parts(), [prog] * 5)
    assert out["answer_accuracy_own_thoughts"] == out["answer_accuracy_other_thoughts"]
    assert out["next_thought_accuracy_by_slot"] == out["next_thought_accuracy_by_slot_other_earlier_thoughts"]
    n = len(prog.steps)
    assert out["steps_by_slot"] == [5] * n + [0] * (6 - n)
    assert out["next_thought_accuracy_by_slot"][n:] == [None] * (6 - n)


def test_counterfactual_thoughts_are_scored_against_both_traces(trained_vae):
    import random
    from nfcot.train import counterfactual_rows
    progs = split("validation", 60, 20)
    cf, slots = counterfactual_rows(progs, ["latent"] * len(progs), 1.0, random.Random(0), 20)
    altered = sum(1 for c, p, j in zip(cf, progs, slots) if j >= 0
                  for t in range(j + 1, len(p.steps)) if c.steps[t].value != p.steps[t].value)
    assert altered == 82
    out = thought_probe(Peek(), _flow(), trained_vae[0], progs)
    assert out["counterfactual_altered_thoughts"] == altered
    assert (out["counterfactual_thought_follows_earlier_thoughts"], out["counterfactual_thought_follows_prompt"]) == (0.878, 0.0)


def test_operand_lookups_score_the_operand_head_against_each_statements_operand_values():
    import torch
    from nfcot.data import operand_tokens
    model, flow, vae = _parts()
    progs = split("validation", 60, 20)
    V, H = model.config.vocab_size, model.config.hidden_size
    head = torch.nn.Linear(H, 2 * V)
    with torch.no_grad():  # names 5 as the first operand and 3 as the second, whatever the input
        head.weight.zero_()
        head.bias.zero_()
        head.bias[tk.TOKEN_ID["5"]] = 10.0
        head.bias[V + tk.TOKEN_ID["3"]] = 10.0
    out = thought_probe(model, flow, vae, progs, 20, head, operand_layer=1)
    lookups = out["operand_head_lookup_accuracy_by_slot"]
    assert lookups[0] is None  # the first statement is a constant: no operands
    ops = [operand_tokens(p, 6) for p in progs]
    for t in range(1, 6):
        scored = [o[t] for o in ops if o[t][0] != -100]
        want = [sum(o[0] == tk.TOKEN_ID["5"] for o in scored) / len(scored),
                sum(o[1] == tk.TOKEN_ID["3"] for o in scored) / len(scored)]
        assert lookups[t] == [round(w, 3) for w in want]
    assert "operand_head_lookup_accuracy_by_slot" not in thought_probe(model, flow, vae, progs)


def test_checkpoint_operand_head_only_for_runs_trained_with_it():
    import torch
    from nfcot.thought_probe import checkpoint_operand_head
    cfg = {"vocab_size": 7, "hidden_size": 4}
    state = torch.nn.Linear(4, 14).state_dict()
    head, layer = checkpoint_operand_head({"config": cfg, "operands": state, "args": {"operands": 1.0, "operand_layer": 3}})
    assert layer == 3 and torch.equal(head.weight, state["weight"])
    assert checkpoint_operand_head({"config": cfg, "operands": state, "args": {"operands": 0.0}})[0] is None
    assert checkpoint_operand_head({"config": cfg, "args": {}})[0] is None
