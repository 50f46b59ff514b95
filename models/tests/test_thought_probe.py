from nfcot import tokenizer as tk
from nfcot.flow import ShallowFlow
from nfcot.model import ModelConfig, NFCoTModel
from nfcot.task import split
from nfcot.thought_probe import thought_probe
from nfcot.vae import StepVAE


def _parts():
    cfg = ModelConfig(vocab_size=len(tk.VOCAB), hidden_size=32, num_layers=1, num_heads=4, num_kv_heads=2,
                      intermediate_size=64)
    return (NFCoTModel(cfg).eval(), ShallowFlow(cfg.thought_dim, cfg.num_thoughts).eval(),
            StepVAE(cfg.vocab_size, cfg.thought_dim).eval())


def test_counts_real_steps_per_slot():
    progs = split("validation", 40, 20)
    out = thought_probe(*_parts(), progs)
    assert out["steps_by_slot"] == [sum(len(p.steps) > t for p in progs) for t in range(6)]
    assert out["steps_by_slot"][:2] == [40, 40]
    for acc in out["next_thought_accuracy_by_slot"] + out["next_thought_accuracy_by_slot_other_earlier_thoughts"]:
        assert acc is None or 0.0 <= acc <= 1.0


def test_another_programs_thoughts_change_nothing_when_all_programs_are_the_same():
    prog = split("validation", 40, 20)[0]
    out = thought_probe(*_parts(), [prog] * 5)
    assert out["answer_accuracy_own_thoughts"] == out["answer_accuracy_other_thoughts"]
    assert out["next_thought_accuracy_by_slot"] == out["next_thought_accuracy_by_slot_other_earlier_thoughts"]
    n = len(prog.steps)
    assert out["steps_by_slot"] == [5] * n + [0] * (6 - n)
    assert out["next_thought_accuracy_by_slot"][n:] == [None] * (6 - n)


def test_counterfactual_thoughts_are_scored_against_both_traces():
    import random
    from nfcot.train import counterfactual_rows
    progs = split("validation", 60, 20)
    out = thought_probe(*_parts(), progs)
    cf, slots = counterfactual_rows(progs, ["latent"] * len(progs), 1.0, random.Random(0), 20)
    altered = sum(1 for c, p, j in zip(cf, progs, slots) if j >= 0
                  for t in range(j + 1, len(p.steps)) if c.steps[t].value != p.steps[t].value)
    assert altered > 20
    assert out["counterfactual_altered_thoughts"] == altered
    # A decoded step cannot match both traces where they differ.
    assert out["counterfactual_thought_follows_earlier_thoughts"] + out["counterfactual_thought_follows_prompt"] <= 1.0
