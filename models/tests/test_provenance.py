"""One record of the code a run or export came from (nfcot.provenance), and the one way the
manifest writers lay out a manifest (export.manifest_fields) and hand back a result (nfcot.report)."""
import json
import subprocess

from nfcot import provenance
from nfcot.report import emit


def test_code_state_is_the_checkouts_commit_and_none_outside_one(tmp_path, monkeypatch):
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    state = provenance.code_state()
    assert state["commit"] == head and isinstance(state["dirty"], bool)
    monkeypatch.setattr(provenance, "NFCOT", str(tmp_path))  # not a git checkout
    assert provenance.code_state() == {"commit": None, "dirty": None}


def test_both_exporters_write_the_shared_fields_in_one_order(tmp_path):
    from nfcot import hf_export
    from nfcot.export import main
    from nfcot.hf_fixture import write_tiny
    main(["--preset", "tiny", "--out", str(tmp_path / "ours"), "--threads", "1"])
    write_tiny(str(tmp_path / "hf"), "qwen3")
    hf = hf_export.export_hf(str(tmp_path / "hf"), str(tmp_path / "theirs"))
    ours = json.loads((tmp_path / "ours" / "manifest.json").read_text())
    assert list(ours)[:5] == list(hf)[:5] == ["format", "format_version", "name", "architecture", "max_context"]
    files = ["kv_cache", "tokenizer", "tokenizer_config", "chat_template", "graphs"]
    assert list(ours)[-6:] == files + ["random_weights"] and list(hf)[-2:] == ["weights", "source"]
    assert list(hf)[-7:-2] == files and ours["kv_cache"] == hf["kv_cache"]
    assert list(ours)[5:9] == ["latent", "special_tokens", "reasoning_modes", "default_reasoning_mode"]
    assert hf["source"]["exporter_commit"] == (provenance.code_state()["commit"] or "unknown")
    assert json.loads((tmp_path / "theirs" / "manifest.json").read_text()) == hf


def test_emit_prints_the_result_and_writes_the_same_json(tmp_path, capsys):
    emit({"a": 1, "b": [0.5]}, str(tmp_path / "r.json"))
    assert json.loads(capsys.readouterr().out) == {"a": 1, "b": [0.5]}
    assert (tmp_path / "r.json").read_text() == '{\n "a": 1,\n "b": [\n  0.5\n ]\n}'
    emit({"c": 2})  # no --json: printed only
    assert capsys.readouterr().out == '{\n "c": 2\n}\n'
