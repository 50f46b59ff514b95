import random
from collections import Counter

from nfcot.task import Program, Step, apply_op, sample_program, split, is_train_source, train_stream, with_value


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
