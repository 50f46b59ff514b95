from nfcot import tokenizer as tk
from nfcot.data import continuation
from nfcot.model import ModelConfig, NFCoTModel
from nfcot.probe import lookups, probe, results
from nfcot.task import Program, Step, split

PROG = Program((Step("a", "5", "", 5), Step("b", "a * 3", "5 * 3", 15), Step("c", "b - a", "15 - 5", 10)))


def test_lookups_and_results_point_at_the_trace_tokens():
    cont = [tk.VOCAB[t] for t in continuation(PROG, "explicit")]
    assert lookups(PROG) == [(10, 1, 0, 5), (24, 2, 0, 15), (26, 2, 1, 5)]
    assert [cont[i] for i, _, _, _ in lookups(PROG)] == ["5", "15", "5"]
    assert [(cont[i], v) for i, v in results(PROG)] == [("15", 15), ("10", 10)]


def test_probe_counts_every_lookup_of_the_programs():
    progs = split("validation", 20, 20)
    model = NFCoTModel(ModelConfig(vocab_size=len(tk.VOCAB), hidden_size=32, num_layers=1, num_heads=4,
                                   num_kv_heads=2, intermediate_size=64)).eval()
    out = probe(model, progs)
    assert sum(out["lookups_by_rank"].values()) == sum(len(lookups(p)) for p in progs)
    assert 0.0 <= out["result_accuracy"] <= 1.0
    assert sum(out["wrong_lookups_wrote"].values()) <= sum(out["lookups_by_rank"].values())
