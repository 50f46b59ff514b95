"""generate.py and evaluate.py on the shipped model (read back from its ONNX graphs): exact outputs
on fixed test-split programs."""
import json

import pytest
import torch

from nfcot import tokenizer as tk
from nfcot.evaluate import main as evaluate_main
from nfcot.evaluate import pass_at_k, thought_step_accuracy
from nfcot.generate import accuracy, correctness, generate, parse_answer
from nfcot.task import split


@pytest.fixture(scope="module")
def progs():
    return split("test", 40)


@pytest.fixture(scope="module")
def by_length(progs):
    """The first test program of each length 2..6."""
    return [next(p for p in progs if len(p.steps) == n) for n in range(2, 7)]


def test_explicit_mode_writes_each_programs_trace_then_its_answer(shipped, by_length):
    texts, thoughts, ntok = generate(shipped[0], by_length, "explicit")
    assert thoughts is None
    assert texts == [f"{p.trace()}\n{p.answer}" for p in by_length]
    assert ntok == [len(tk.encode(p.trace())) + 2 for p in by_length] == [19, 33, 47, 61, 75]


def test_none_and_latent_answer_in_one_token(shipped, by_length):
    assert [p.answer for p in by_length] == [1, 9, 0, 0, -10]
    texts, thoughts, ntok = generate(shipped[0], by_length, "none")
    assert (texts, thoughts, ntok) == (["1", "9", "8", "20", "-9"], None, [1] * 5)
    texts, thoughts, ntok = generate(shipped[0], by_length, "latent")
    assert (texts, ntok) == (["1", "9", "0", "0", "-19"], [1] * 5)
    assert thoughts.shape == (5, 6, 16)


def test_latent_thoughts_at_temperature_0_are_the_nf_means(shipped, by_length):
    """u_1 = mu at the prompt's last position, u_2 = mu after feeding u_1, ...: checked by a dense
    forward over prompt + thoughts (no cache, no padding)."""
    model = shipped[0]
    _, thoughts, _ = generate(model, by_length, "latent")
    for r, p in enumerate(by_length):
        prompt = tk.prompt_ids(p.source(), "latent")
        P, K, D = len(prompt), 6, 16
        ids = torch.tensor([prompt + [tk.PAD] * K])
        th = torch.zeros(1, P + K, D)
        th[0, P:] = thoughts[r]
        ist = torch.zeros(1, P + K)
        ist[0, P:] = 1
        h, _ = model(ids, th, ist, torch.arange(P + K)[None])
        _, mu, _ = model.heads(h[0, P - 1:P + K - 1])
        assert torch.allclose(mu, thoughts[r], atol=1e-5)


def test_accuracy_and_correctness_on_the_first_40_test_programs(shipped, progs):
    model = shipped[0]
    assert accuracy(model, progs, "none") == (0.675, 0.0)
    acc, pos = accuracy(model, progs, "explicit", batch=16)  # batches of 16: padding must not matter
    assert (acc, round(pos, 2)) == (0.975, 44.65)
    res = correctness(model, progs, "latent")
    assert sum(c for c, _ in res) == 35 and {n for _, n in res} == {6}
    # Sampled thoughts (T_z = 0.9) from a seeded generator: repeatable, and worse than the mean.
    texts, _, _ = generate(model, progs, "latent", 0.9, torch.Generator().manual_seed(0))
    assert sum(parse_answer(t) == p.answer for t, p in zip(texts, progs)) == 37
    texts2, _, _ = generate(model, progs, "latent", 0.9, torch.Generator().manual_seed(0))
    assert texts2 == texts


def test_parse_answer_reads_the_last_line():
    assert parse_answer("a = 5\na = 5\n5") == 5
    assert parse_answer(" -12 \n") == -12
    assert parse_answer("b = 3\nb =") is None
    assert parse_answer("") is None


def test_pass_at_k_is_the_unbiased_estimator():
    assert pass_at_k(16, 0, 1) == 0.0
    assert pass_at_k(16, 16, 16) == 1.0
    assert pass_at_k(16, 4, 1) == pytest.approx(0.25)
    assert pass_at_k(4, 1, 2) == pytest.approx(0.5)      # 1 - C(3,2)/C(4,2)
    assert pass_at_k(16, 1, 16) == 1.0                   # 15 wrong samples cannot fill 16 draws


def test_decoded_thoughts_name_the_right_step(shipped, progs):
    model, flow, vae, _ = shipped
    assert thought_step_accuracy(model, flow, vae, progs, 6) == 113 / 119


def test_evaluate_command_on_a_model_directory(shipped, progs, tmp_path, capsys):
    out = tmp_path / "eval.json"
    evaluate_main(["--model-dir", "nfcot-trace-small", "--programs", "data/test.jsonl", "--count", "12",
                   "--samples", "2", "--threads", "1", "--json", str(out)])
    res = json.loads(out.read_text())
    first = progs[:12]
    assert res["test_programs"] == 12 and res["M"] == 20
    for mode in ("none", "explicit", "latent"):
        assert res[mode]["accuracy"] == accuracy(shipped[0], first, mode)[0]
    assert [res[m]["accuracy"] for m in ("none", "explicit", "latent")] == [8 / 12, 11 / 12, 9 / 12]
    assert set(res["latent_pass_at_k"]) == {"1"}
    assert res["majority_baseline"] == 2 / 12
    assert "latent    accuracy 0.750" in capsys.readouterr().out
