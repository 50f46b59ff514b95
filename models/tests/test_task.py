import random
from collections import Counter

import pytest

from nfcot.task import (SPLIT_SEEDS, TEST_SIZE, Program, Step, apply_op, is_train_source, parse_program, sample_program,
                        split, statistics, train_stream, with_value)


def test_programs_follow_the_distribution():
    rng = random.Random(7)
    progs = [sample_program(rng, 20) for _ in range(3000)]
    ns = Counter(len(p.steps) for p in progs)
    assert set(ns) == {2, 3, 4, 5, 6}
    for p in progs:
        names = [s.var for s in p.steps]
        assert len(set(names)) == len(names)
        assert 1 <= p.steps[0].value <= 9 and p.steps[0].expr == str(p.steps[0].value)
        env = {}
        for s in p.steps:
            assert -20 <= s.value <= 20
            env[s.var] = eval(s.expr, {}, dict(env))  # the source is valid Python with these values
            assert env[s.var] == s.value
        out = {}
        exec(p.source().replace("print(", "_r = ("), {}, out)
        assert out["_r"] == p.answer
    answers = Counter(p.answer for p in progs)
    assert answers.most_common(1)[0][1] / len(progs) < 0.10


def test_floor_division_and_modulo_match_python():
    for x in range(-20, 21):
        for y in range(2, 10):
            assert apply_op(x, "//", y) == x // y
            assert apply_op(x, "%", y) == x % y


def test_splits_are_deterministic_and_disjoint_from_training():
    a = split("test", 200)
    b = split("test", 200)
    assert [p.source() for p in a] == [p.source() for p in b]
    assert all(not is_train_source(p.source()) for p in a)
    stream = train_stream(0)
    assert all(is_train_source(next(stream).source()) for _ in range(500))


def test_trace_substitutes_values_then_states_each_value():
    rng = random.Random(3)
    p = sample_program(rng, 20, n=3)
    lines = p.trace().split("\n")
    first, second, third = p.steps
    assert len(lines) == 5
    assert lines[0] == f"{first.var} = {first.value}"
    assert lines[1] == f"{second.var} = {second.expr} = {second.shown}"
    assert lines[2] == f"{second.var} = {second.value}"
    assert lines[3] == f"{third.var} = {third.expr} = {third.shown}"
    assert lines[-1] == f"{third.var} = {p.answer}"


def test_trace_line_for_a_fixed_program():
    prog = Program((Step("a", "5", "", 5), Step("c", "a + 2", "5 + 2", 7)))
    assert prog.trace() == "a = 5\nc = a + 2 = 5 + 2\nc = 7"


def test_with_value_recomputes_later_statements_and_keeps_the_source():
    prog = Program((Step("a", "5", "", 5), Step("b", "a * 3", "5 * 3", 15), Step("c", "b - a", "15 - 5", 10),
                    Step("d", "a % 4", "5 % 4", 1)))
    cf = with_value(prog, 0, 2, 20)
    assert cf.source() == prog.source()
    assert [s.value for s in cf.steps] == [2, 6, 4, 2]
    assert [s.shown for s in cf.steps] == ["", "2 * 3", "6 - 2", "2 % 4"]
    mid = with_value(prog, 1, -7, 20)
    assert [s.value for s in mid.steps] == [5, -7, -12, 1]
    assert with_value(prog, 0, 9, 20) is None  # b = 27 leaves -20..20


# Expected values: `python -m nfcot.task stats 200000` (seed 12345; models/README.md, The task).
# Redraws of out-of-range statements move the shares off the nominal weights; the binomial noise of
# the 20,000-program sample below (about 60,000 statements) is about 0.002 on a share, so each
# tolerance is 3-5 of those standard deviations.
EXPECTED_OPS = {"+": 0.3519, "-": 0.3336, "*": 0.1153, "//": 0.0956, "%": 0.1035}


@pytest.fixture(scope="module")
def sample():
    rng = random.Random(2026)
    return [sample_program(rng, 20) for _ in range(20_000)]


def test_operator_shares_after_redraws(sample):
    st = statistics(sample)
    for op, want in EXPECTED_OPS.items():
        assert abs(st["operator_share"][op] - want) <= 0.008, (op, st["operator_share"][op], want)
    # The nominal weights are not what a program holds: `*` leaves -20..20 most often and is redrawn.
    assert st["operator_share"]["*"] < 0.2 - 0.06


def test_variable_constant_split_and_floordiv_mod_constants(sample):
    st = statistics(sample)
    assert abs(st["variable_y_share"] - 0.4655) <= 0.012  # nominal 0.5; ~40,000 + - * statements
    consts = st["floordiv_mod_constant_share"]
    assert sorted(consts) == list(range(2, 10))  # y in 2..9 only
    for y, share in consts.items():
        assert abs(share - 0.125) <= 0.012, (y, share)  # never redrawn: uniform; ~12,000 statements


def test_lengths_are_near_uniform(sample):
    for n, share in statistics(sample)["length_share"].items():
        assert abs(share - 0.2) <= 0.02, (n, share)  # 2..6 uniform, shifted by the 0/1 rejection


def test_answers_0_and_1_are_kept_a_quarter_of_the_time(monkeypatch):
    import nfcot.task as task
    drawn = []
    real = task._sample_once

    def counting(rng, m, n):
        p = real(rng, m, n)
        drawn.append(p.answer in (0, 1))
        return p
    monkeypatch.setattr(task, "_sample_once", counting)
    rng = random.Random(11)
    kept = [task.sample_program(rng, 20) for _ in range(20_000)]
    rate = sum(p.answer in (0, 1) for p in kept) / sum(drawn)
    # ~8,600 draws end in 0 or 1: binomial sd of the rate about 0.005.
    assert abs(rate - 0.25) <= 0.02, rate


def test_sources_are_spaced_as_ast_unparse_writes_them(sample):
    import ast
    for p in sample[:3000]:
        src = p.source()
        assert ast.unparse(ast.parse(src)) == src
    # and a hand-made case the spacing rule decides: operators between single spaces, no parentheses
    assert ast.unparse(ast.parse("b=a//3\nprint( b )")) == "b = a // 3\nprint(b)"


def test_splits_hold_distinct_programs_and_validation_never_draws_a_test_program():
    test = [p.source() for p in split("test", TEST_SIZE)]
    val = [p.source() for p in split("validation", 1000)]
    assert len(set(test)) == len(test) and len(set(val)) == len(val)
    assert not set(test) & set(val)
    # The undeduplicated draw repeated a test program and shared programs with validation.
    rng = random.Random(SPLIT_SEEDS["test"] * 1_000_003 + 20)
    raw = []
    while len(raw) < TEST_SIZE:
        p = sample_program(rng, 20)
        if not is_train_source(p.source()):
            raw.append(p.source())
    assert len(raw) - len(set(raw)) == 1
    assert set(raw) - set(test) == set() and len(set(test) - set(raw)) == 1


def test_the_committed_test_split_is_the_split_with_current_traces():
    import json
    import os
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "test.jsonl")
    rows = [json.loads(line) for line in open(path)]
    progs = split("test", TEST_SIZE)
    assert len(rows) == TEST_SIZE
    for row, p in zip(rows, progs):
        assert row == {"source": p.source(), "answer": p.answer, "n": len(p.steps), "trace": p.trace()}
        assert parse_program(row["source"]) == p


def test_parse_program_reads_a_source_back_and_refuses_others():
    prog = Program((Step("a", "5", "", 5), Step("b", "a * 3", "5 * 3", 15), Step("c", "b % 4", "15 % 4", 3)))
    assert parse_program(prog.source()) == prog
    with pytest.raises(ValueError):
        parse_program("a = 5\nb = a * 3")
    with pytest.raises(ValueError):
        parse_program("a = 5\nb = a*3\nprint(b)")
