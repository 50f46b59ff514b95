from nfcot import tokenizer as tk
from nfcot.data import continuation
from nfcot.probe import lookups, probe, results
from nfcot.task import Program, Step, split

from .fakes import LatestNumber

PROG = Program((Step("a", "5", "", 5), Step("b", "a * 3", "5 * 3", 15), Step("c", "b - a", "15 - 5", 10)))


def test_lookups_and_results_point_at_the_trace_tokens():
    cont = [tk.VOCAB[t] for t in continuation(PROG, "explicit")]
    assert lookups(PROG) == [(10, 1, 0, 5), (24, 2, 0, 15), (26, 2, 1, 5)]
    assert [cont[i] for i, _, _, _ in lookups(PROG)] == ["5", "15", "5"]
    assert [(cont[i], v) for i, v in results(PROG)] == [("15", 15), ("10", 10)]


def test_probe_scores_a_known_guesser_as_worked_out_by_hand():
    """LatestNumber writes the latest number it has seen. In PROG's trace `a = 5 / b = a * 3 = 5 * 3 /
    b = 15 / c = b - a = 15 - 5 / c = 10`: b's look-up of a (rank 0) guesses 3 (no earlier value);
    c's look-up of b (rank 0) guesses 15, right; c's look-up of a (rank 1) guesses 15, b's value
    (rank 0); the results guess 3 and 5, both wrong."""
    out = probe(LatestNumber(), [PROG])
    assert out == {"lookup_accuracy_by_rank": {"0": 0.5, "1": 0.0}, "lookups_by_rank": {"0": 2, "1": 1},
                   "result_accuracy": 0.0, "wrong_lookups_wrote": {"no earlier value": 1, "rank 0": 1}}


def test_probe_counts_every_lookup_of_the_programs():
    progs = split("validation", 20, 20)
    out = probe(LatestNumber(), progs)
    assert sum(out["lookups_by_rank"].values()) == sum(len(lookups(p)) for p in progs)
    # Fixed programs, a deterministic guesser: exact values (computed once, then pinned).
    assert out == {"lookup_accuracy_by_rank": {"0": 0.462, "1": 0.238, "2": 0.2, "3+": 0.0},
                   "lookups_by_rank": {"0": 52, "1": 21, "2": 10, "3+": 1}, "result_accuracy": 0.098,
                   "wrong_lookups_wrote": {"no earlier value": 33, "rank 0": 11, "rank 1": 6, "rank 2": 2, "rank 4": 1}}
    assert sum(out["wrong_lookups_wrote"].values()) == 84 - (24 + 5 + 2 + 0)  # every wrong look-up is placed


def test_the_shipped_model_reads_every_operand_right(shipped):
    """The shipped model on 40 validation programs: models/README.md reports look-ups and arithmetic
    right throughout on the explicit trace; a probe that scored the wrong positions would not."""
    out = probe(shipped[0], split("validation", 40, 20))
    assert out == {"lookup_accuracy_by_rank": {"0": 1.0, "1": 1.0, "2": 1.0, "3+": 1.0},
                   "lookups_by_rank": {"0": 103, "1": 47, "2": 19, "3+": 8}, "result_accuracy": 1.0,
                   "wrong_lookups_wrote": {}}
