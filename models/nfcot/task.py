"""Program-tracing task: straight-line Python programs, their traces and answers.

The distribution is fixed by the models issue so results compare across fresh draws.
"""
from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass

OPS = ["+", "-", "*", "//", "%"]
OP_WEIGHTS = [0.3, 0.3, 0.2, 0.1, 0.1]
DEFAULT_M = 20


@dataclass(frozen=True)
class Step:
    var: str
    expr: str        # as ast.unparse writes the right-hand side, e.g. "a * 3"
    shown: str       # the right-hand side with values substituted, e.g. "5 * 3" ("" for constants)
    value: int


@dataclass(frozen=True)
class Program:
    steps: tuple[Step, ...]

    @property
    def answer(self) -> int:
        return self.steps[-1].value

    def source(self) -> str:
        lines = [f"{s.var} = {s.expr}" for s in self.steps]
        lines.append(f"print({self.steps[-1].var})")
        return "\n".join(lines)

    def trace(self) -> str:
        """Explicit CoT, per assignment: the statement with its operands' values substituted, then
        the value on a line of its own (`c = a + 2 = 5 + 2` / `c = 7`).

        Every value is then written as `name = number`, the way the program states constants: a
        later look-up of `a` is one induction step (the number after the latest `a =`), where
        `c = 5 + 2 = 7` made it two (find c's statement, then a's value at the end of a line).
        """
        out = []
        for s in self.steps:
            if s.shown:
                out.append(f"{s.var} = {s.expr} = {s.shown}")
            out.append(f"{s.var} = {s.value}")
        return "\n".join(out)


def apply_op(x: int, op: str, y: int) -> int:
    if op == "+":
        return x + y
    if op == "-":
        return x - y
    if op == "*":
        return x * y
    if op == "//":
        return x // y
    return x % y


def with_value(prog: Program, j: int, value: int, m: int = DEFAULT_M) -> Program | None:
    """The same source traced as if statement j had produced `value`: the later statements are
    recomputed from it (None if one leaves -m..m). A counterfactual trace for training: its later
    steps follow from the thoughts, not from the prompt."""
    values: dict[str, int] = {}
    steps = []
    for k, s in enumerate(prog.steps):
        if k < j:
            v, shown = s.value, s.shown
        elif k == j:
            v, shown = value, s.shown
        else:
            x, op, y_txt = s.expr.split(" ")
            y = values[y_txt] if y_txt in values else int(y_txt)
            v = apply_op(values[x], op, y)
            if not -m <= v <= m:
                return None
            shown = f"{values[x]} {op} {y}"
        values[s.var] = v
        steps.append(Step(s.var, s.expr, shown, v))
    return Program(tuple(steps))


def sample_program(rng: random.Random, m: int = DEFAULT_M, n: int | None = None) -> Program:
    while True:
        prog = _sample_once(rng, m, n if n is not None else rng.randint(2, 6))
        if prog.answer in (0, 1) and rng.random() >= 0.25:
            continue
        return prog


def _sample_once(rng: random.Random, m: int, n: int) -> Program:
    names = rng.sample("abcdefghijklmnopqrstuvwxyz", n)
    c = rng.randint(1, 9)
    steps = [Step(names[0], str(c), "", c)]
    values = {names[0]: c}
    for name in names[1:]:
        while True:
            op = rng.choices(OPS, OP_WEIGHTS)[0]
            x = rng.choice([s.var for s in steps])
            if op in ("//", "%"):
                y_txt = y_shown = str(rng.randint(2, 9))
                y = int(y_txt)
            elif rng.random() < 0.5:
                yv = rng.choice([s.var for s in steps])
                y_txt, y = yv, values[yv]
                y_shown = str(y)
            else:
                y = rng.randint(1, 9)
                y_txt = y_shown = str(y)
            v = apply_op(values[x], op, y)
            if -m <= v <= m:
                break
        steps.append(Step(name, f"{x} {op} {y_txt}", f"{values[x]} {op} {y_shown}", v))
        values[name] = v
    return Program(tuple(steps))


SPLIT_SEEDS = {"train": 1, "validation": 2, "test": 3}
# The test split proper: its first TEST_SIZE programs (data/test.jsonl). Validation never draws one.
TEST_SIZE = 1000


def split(name: str, count: int, m: int = DEFAULT_M) -> list[Program]:
    """A deterministic split of distinct programs. Held-out splits keep only sources in the held-out
    hash bucket, which training never draws from, so no test program is ever trained on; validation
    and test share that bucket, so validation skips the test split's first TEST_SIZE sources."""
    exclude = {p.source() for p in split("test", TEST_SIZE, m)} if name == "validation" else set()
    rng = random.Random(SPLIT_SEEDS[name] * 1_000_003 + m)
    out: list[Program] = []
    seen: set[str] = set()
    while len(out) < count:
        p = sample_program(rng, m)
        src = p.source()
        if (name != "train" and is_train_source(src)) or src in seen or src in exclude:
            continue
        seen.add(src)
        out.append(p)
    return out


def parse_program(source: str, m: int = DEFAULT_M) -> Program:
    """The Program a source states (as Program.source writes it), values computed: reads the
    prompts of data/test.jsonl back."""
    lines = source.strip().split("\n")
    if not (lines[-1].startswith("print(") and lines[-1].endswith(")")):
        raise ValueError(f"not a task program (no final print): {source!r}")
    values: dict[str, int] = {}
    steps = []
    for line in lines[:-1]:
        var, expr = line.split(" = ")
        parts = expr.split(" ")
        if len(parts) == 1:
            v, shown = int(parts[0]), ""
        else:
            x, op, y_txt = parts
            y = values[y_txt] if y_txt in values else int(y_txt)
            v, shown = apply_op(values[x], op, y), f"{values[x]} {op} {y}"
        steps.append(Step(var, expr, shown, v))
        values[var] = v
    prog = Program(tuple(steps))
    if prog.source() != source.strip() or lines[-1] != f"print({steps[-1].var})":
        raise ValueError(f"not a task program: {source!r}")
    return prog


def is_train_source(src: str) -> bool:
    """Training draws are disjoint from held-out ones by a hash partition of the program text:
    a source belongs to training unless its hash falls in the held-out bucket."""
    import hashlib
    h = int.from_bytes(hashlib.sha1(src.encode()).digest()[:4], "little")
    return h % 10 != 0


def train_stream(seed: int, m: int = DEFAULT_M, max_n: int = 6):
    """Endless training programs (held-out bucket excluded), optionally capped at max_n steps."""
    rng = random.Random(seed)
    while True:
        p = sample_program(rng, m, rng.randint(2, max_n))
        if is_train_source(p.source()):
            yield p


def statistics(progs: list[Program]) -> dict:
    """What the draw produces, against the nominal weights: operator shares over the statements after
    the first, the share of `+ - *` statements whose y is a variable, the `//` / `%` constants' shares,
    program lengths, and the share of answers 0 or 1."""
    ops: Counter = Counter()
    var_y = total_y = 0
    consts: Counter = Counter()
    for p in progs:
        for s in p.steps[1:]:
            _, op, y = s.expr.split(" ")
            ops[op] += 1
            if op in ("//", "%"):
                consts[int(y)] += 1
            else:
                total_y += 1
                var_y += y.isalpha()
    n_ops = sum(ops.values())
    return {"programs": len(progs),
            "operator_share": {op: round(ops[op] / n_ops, 4) for op in OPS},
            "variable_y_share": round(var_y / total_y, 4),
            "floordiv_mod_constant_share": {y: round(consts[y] / sum(consts.values()), 4) for y in sorted(consts)},
            "length_share": {n: round(sum(len(p.steps) == n for p in progs) / len(progs), 4) for n in range(2, 7)},
            "answer_0_or_1_share": round(sum(p.answer in (0, 1) for p in progs) / len(progs), 4)}


def main(argv=None) -> None:
    """Write a split as JSON lines {source, answer, n, trace}: the prompts benchmarks and tests use.
    With --stats, print the statistics of COUNT fresh draws (seed --seed) instead."""
    import argparse
    import json
    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("split", choices=sorted(SPLIT_SEEDS) + ["stats"])
    ap.add_argument("count", type=int)
    ap.add_argument("--m", type=int, default=DEFAULT_M)
    ap.add_argument("--out")
    ap.add_argument("--seed", type=int, default=12345, help="for stats")
    args = ap.parse_args(argv)
    if args.split == "stats":
        rng = random.Random(args.seed)
        print(json.dumps(statistics([sample_program(rng, args.m) for _ in range(args.count)]), indent=1))
        return
    if not args.out:
        ap.error("--out is required to write a split")
    with open(args.out, "w") as f:
        for p in split(args.split, args.count, args.m):
            f.write(json.dumps({"source": p.source(), "answer": p.answer, "n": len(p.steps), "trace": p.trace()}) + "\n")


if __name__ == "__main__":
    main()
