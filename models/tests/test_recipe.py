import json
import subprocess

import pytest

from nfcot.recipe import main


def write(tmp_path, stages):
    d = tmp_path / "recipes"
    d.mkdir(exist_ok=True)
    (d / "tiny.json").write_text(json.dumps({"description": "test", "stages": stages}))
    return ["tiny", "--recipes", str(d), "--runs", str(tmp_path / "runs")]


def record(tmp_path):
    return json.loads((tmp_path / "runs" / "recipes" / "tiny" / "manifest.json").read_text())


def test_runs_stages_records_provenance_and_resumes(tmp_path, capsys):
    a, b, m = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "model"
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    stages = [
        {"name": "a", "module": "nfcot.task", "args": ["validation", "3", "--out", str(a)], "done": str(a)},
        # An older commit's task.py (here HEAD's, through the same path as a real older commit).
        {"name": "b", "module": "nfcot.task", "args": ["test", "2", "--out", str(b)], "done": str(b),
         "code": {"nfcot/task.py": head}},
        {"name": "export", "module": "nfcot.export", "args": ["--preset", "tiny", "--out", str(m), "--extra", "{provenance}"],
         "done": str(m / "manifest.json")},
    ]
    argv = write(tmp_path, stages)
    main(argv)
    assert len(a.read_text().splitlines()) == 3 and len(b.read_text().splitlines()) == 2
    rec = record(tmp_path)
    assert rec["recipe"] == "tiny" and len(rec["recipe_sha256"]) == 64
    assert [rec["stages"][k]["status"] for k in ("a", "b", "export")] == ["done"] * 3
    assert rec["stages"]["b"]["code"] == {"nfcot/task.py": head}
    assert rec["stages"]["a"]["commit"] == head
    # The exported manifest records the recipe, every stage's flags and the commit.
    prov = json.loads((m / "manifest.json").read_text())["recipe"]
    assert prov["name"] == "tiny" and prov["commit"] == head and prov["stage"] == "export"
    assert prov["stages"]["a"] == ["validation", "3", "--out", str(a)]
    capsys.readouterr()

    # Rerun: everything is skipped. A changed stage reruns alone.
    main(argv)
    assert capsys.readouterr().out.count("done earlier, skipped") == 3
    stages[0]["args"][1] = "4"
    argv = write(tmp_path, stages)
    main(argv)
    out = capsys.readouterr().out
    assert out.count("skipped") == 2 and len(a.read_text().splitlines()) == 4


def test_a_failed_stage_stops_the_recipe_and_a_rerun_resumes_there(tmp_path, capsys):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    stages = [
        {"name": "a", "module": "nfcot.task", "args": ["validation", "2", "--out", str(a)], "done": str(a)},
        {"name": "b", "module": "nfcot.task", "args": ["nosuchsplit", "2", "--out", str(b)], "done": str(b)},
    ]
    argv = write(tmp_path, stages)
    with pytest.raises(SystemExit, match="b failed"):
        main(argv)
    assert record(tmp_path)["stages"]["b"]["status"] == "failed"
    stages[1]["args"][0] = "test"
    main(write(tmp_path, stages))
    out = capsys.readouterr().out
    assert "a: done earlier, skipped" in out and b.exists()


def test_the_committed_recipes_parse_and_name_modules_that_exist(tmp_path, capsys):
    import importlib.util
    import os
    recipes = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "recipes")
    names = sorted(f[:-5] for f in os.listdir(recipes) if f.endswith(".json"))
    assert names == ["nfcot-trace-small", "nfcot-trace-small-v2", "rl-small"]
    for name in names:
        main([name, "--dry-run", "--runs", str(tmp_path)])
        for stage in json.load(open(os.path.join(recipes, f"{name}.json")))["stages"]:
            assert importlib.util.find_spec(stage["module"]) is not None, (name, stage["module"])
    out = capsys.readouterr().out
    assert "t31n" in out and "--admin-key {admin_key}" in out
    assert "nfcot.model_at_commit" in out and "--oversample 4" in out and "nfcot.ship" in out


def test_a_stage_served_on_a_missing_model_stops_with_the_reason(tmp_path):
    stages = [{"name": "after", "module": "nfcot.task", "serve": "runs/nowhere/best", "args": ["test", "1"],
               "done": str(tmp_path / "never")}]
    with pytest.raises(SystemExit, match="runs/nowhere/best holds no model"):
        main(write(tmp_path, stages))
