"""A recipe's base read from git history (nfcot.model_at_commit) and its last stage (nfcot.ship)."""
import json
import os
import subprocess

import pytest

from nfcot.model_at_commit import write_model_at
from nfcot.ship import EVALUATE_COMMAND, ship

MODELS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_model_at_commit_writes_the_directory_as_the_commit_holds_it(tmp_path):
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=MODELS, capture_output=True, text=True, check=True).stdout.strip()
    names = write_model_at(head, "models/nfcot-trace-small", str(tmp_path / "base"))
    assert "manifest.json" in names and "backbone.onnx" in names
    for n in names:
        want = subprocess.run(["git", "show", f"{head}:models/nfcot-trace-small/{n}"], cwd=MODELS, capture_output=True,
                              check=True).stdout
        assert (tmp_path / "base" / n).read_bytes() == want, n
    assert sorted(os.listdir(tmp_path / "base")) == sorted(names)
    assert not (tmp_path / "base.tmp").exists()
    with pytest.raises(SystemExit, match="not a model directory"):
        write_model_at(head, "models/nfcot", str(tmp_path / "bad"))
    assert not (tmp_path / "bad").exists()


def evaluations():
    ev = {"test_programs": 1000, "M": 20, "none": {"accuracy": 0.58}, "explicit": {"accuracy": 0.996},
          "latent": {"accuracy": 0.96}}
    se = {"split": "test", "count": 1000, "latent_temperature": 0.9, "latent_sampled": 0.93, "explicit": 0.996,
          "by_statements": {"2": {"none": 0.99, "explicit": 1.0, "latent_greedy": 1.0, "latent_sampled": 0.99}}}
    hist = {"history": [{"step": 1}, {"step": 2}, {"step": 3}],
            "evals": [{"step": 0, "latent_greedy": 0.9, "latent_sampled": 0.8, "explicit": 0.99, "none": 0.5},
                      {"step": 2, "latent_greedy": 0.95, "latent_sampled": 0.85, "explicit": 0.98, "none": 0.6}],
            "best": {"step": 2, "latent_greedy": 0.95, "dir": "/somewhere/local"}}
    return ev, se, hist


def test_ship_writes_the_evaluation_provenance_and_the_chosen_update(tmp_path):
    src = tmp_path / "best"
    src.mkdir()
    (src / "manifest.json").write_text(json.dumps({"name": "m", "evaluation": {"old": 1}, "rl": {"init": "/abs/path"}}))
    (src / "backbone.onnx").write_bytes(b"graph")
    ev, se, hist = evaluations()
    prov = {"recipe": {"name": "r", "commit": "abc", "stages": {"rl": ["--lr", "3e-5"]}}}
    m = ship(str(src), ev, se, hist, prov, str(tmp_path / "out"))
    assert json.loads((tmp_path / "out" / "manifest.json").read_text()) == m
    assert (tmp_path / "out" / "backbone.onnx").read_bytes() == b"graph"
    assert m["evaluation"]["accuracy"] == {"none": 0.58, "explicit": 0.996, "latent": 0.96}
    assert m["evaluation"]["programs"] == 1000 and m["evaluation"]["split"] == "test"
    assert m["evaluation"]["command"] == EVALUATE_COMMAND
    assert m["evaluation"]["serve_eval"]["latent_pass_at_1"] == 0.93
    assert m["evaluation"]["serve_eval"]["by_statements"]["2"] == {"none": 0.99, "explicit": 1.0, "latent_greedy": 1.0,
                                                                   "latent_pass_at_1": 0.99}
    assert m["rl"] == {"updates": 3, "chosen_update": 2, "chosen_on": "validation latent T_z = 0",
                       "validation": {"before": {"latent_greedy": 0.9, "latent_sampled": 0.8, "explicit": 0.99, "none": 0.5},
                                      "chosen": {"latent_greedy": 0.95, "latent_sampled": 0.85, "explicit": 0.98,
                                                 "none": 0.6}}}
    assert m["recipe"] == prov["recipe"] and "/abs/path" not in json.dumps(m)


def test_ship_refuses_evaluations_of_different_splits(tmp_path):
    src = tmp_path / "best"
    src.mkdir()
    (src / "manifest.json").write_text("{}")
    ev, se, hist = evaluations()
    with pytest.raises(SystemExit, match="the evaluations disagree"):
        ship(str(src), ev, {**se, "split": "validation"}, hist, {}, str(tmp_path / "out"))
    assert sorted(os.listdir(tmp_path)) == ["best"]
