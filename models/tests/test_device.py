"""--device of both trainers (nfcot.device): auto follows torch's CUDA check; cuda without CUDA is
refused with the reason before any work."""
import os
import subprocess
import sys

import pytest
import torch

from nfcot.device import choose_device


def test_auto_takes_cuda_only_when_torch_sees_it(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert choose_device("auto") == "cuda" and choose_device("cuda") == "cuda" and choose_device("cpu") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert choose_device("auto") == "cpu"
    with pytest.raises(SystemExit, match="--device cuda: torch .* sees no CUDA device"):
        choose_device("cuda")


@pytest.mark.parametrize("module", ["train", "rl"])
def test_both_trainers_refuse_cuda_without_it_before_any_work(module, monkeypatch, tmp_path):
    import importlib
    main = importlib.import_module(f"nfcot.{module}").main
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    argv = ["--out", str(tmp_path / "run"), "--device", "cuda"]
    if module == "rl":
        argv += ["--server", "http://127.0.0.1:9"]  # never reached: nothing listens there
    with pytest.raises(SystemExit, match="--device cuda: torch .* sees no CUDA device"):
        main(argv)
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_the_cli_says_why_cuda_is_refused():
    r = subprocess.run([sys.executable, "-m", "nfcot.train", "--out", "unused", "--device", "cuda"],
                       cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                       capture_output=True, text=True)
    assert r.returncode == 1 and "--device cuda: torch" in r.stderr and "use --device cpu or --device auto" in r.stderr
