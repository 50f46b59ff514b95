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
