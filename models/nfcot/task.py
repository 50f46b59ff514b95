"""Program-tracing task: straight-line Python programs, their traces and answers.

The distribution is fixed by the models issue so results compare across fresh draws.
"""
from __future__ import annotations

import random
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


def split(name: str, count: int, m: int = DEFAULT_M) -> list[Program]:
    """A deterministic split. Held-out splits keep only sources in the held-out hash bucket, which
    training never draws from, so no test program is ever trained on."""
    rng = random.Random(SPLIT_SEEDS[name] * 1_000_003 + m)
    out: list[Program] = []
    while len(out) < count:
        p = sample_program(rng, m)
        if name != "train" and is_train_source(p.source()):
            continue
        out.append(p)
    return out


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


def main(argv=None) -> None:
    """Write a split as JSON lines {source, answer, n, trace}: the prompts benchmarks and tests use."""
    import argparse
    import json
    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("split", choices=sorted(SPLIT_SEEDS))
    ap.add_argument("count", type=int)
    ap.add_argument("--m", type=int, default=DEFAULT_M)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    with open(args.out, "w") as f:
        for p in split(args.split, args.count, args.m):
            f.write(json.dumps({"source": p.source(), "answer": p.answer, "n": len(p.steps), "trace": p.trace()}) + "\n")


if __name__ == "__main__":
    main()
