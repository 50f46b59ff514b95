"""Both trainers on a GPU (run where torch sees CUDA; skipped elsewhere, CI included).

The RL gradient is computed with nfcot.rl_score on --device: on CUDA it must give the CPU's
log-probs (what the server's numbers are checked against at 1e-3) and the same update. Training
with --device cuda must follow the CPU run of the same seed (same batches, same initial weights)."""
import copy
import json

import numpy as np
import pytest
import torch

from nfcot import tokenizer as tk
from nfcot.grpo import group_advantages, grpo_loss
from nfcot.rl_score import Trajectory, score
from nfcot.task import split

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def trajectories(model, count=16, seed=0):
    """Latent trajectories over validation programs: thoughts drawn around zero, a short answer."""
    c = model.config
    rng = np.random.default_rng(seed)
    out = []
    for p in split("validation", count):
        u = rng.normal(0.0, 1.0, (c.num_thoughts, c.thought_dim)).astype(np.float32)
        out.append(Trajectory(tk.prompt_ids(p.source(), "latent"), u, tk.encode(f"answer: {p.answer}")))
    return out


def shipped_shape_model():
    """The shipped architecture with seeded random weights (reading the shipped ONNX back needs the
    exporter of the torch this project pins; a GPU machine may hold another)."""
    import os
    from nfcot.model import ModelConfig, NFCoTModel
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    arch = json.load(open(os.path.join(here, "nfcot-trace-small", "manifest.json")))["architecture"]
    torch.manual_seed(0)
    return NFCoTModel(ModelConfig.from_dict({k: v for k, v in arch.items() if k != "head_dim"}))


def test_rl_log_probs_and_update_on_cuda_match_cpu():
    base = shipped_shape_model()
    model_cpu = copy.deepcopy(base).train()
    model_gpu = copy.deepcopy(base).to("cuda").train()
    trajs = trajectories(model_cpu)
    s_cpu = score(model_cpu, trajs, 0.9, "cpu")
    s_gpu = score(model_gpu, trajs, 0.9, "cuda")
    for k in ("thought_lp1", "thought_lpT", "answer_lp", "token_lp"):
        diff = (s_cpu[k].detach() - s_gpu[k].detach().cpu()).abs().max().item()
        print(f"{k}: max |cpu - cuda| {diff:.2e}")
        assert diff < 1e-3, k
    rewards = torch.tensor([[1.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 0.0, 0.0]],
                           dtype=torch.float64)
    adv = group_advantages(rewards).reshape(-1)
    grads = []
    for m, s, dev in ((model_cpu, s_cpu, "cpu"), (model_gpu, s_gpu, "cuda")):
        logp = s["thought_lpT"].sum(1) + s["answer_lp"]
        loss, _ = grpo_loss(logp, logp.detach(), adv.to(dev))
        m.zero_grad()
        loss.backward()
        grads.append(torch.cat([p.grad.detach().cpu().flatten() for p in m.parameters() if p.grad is not None]))
    rel = ((grads[0] - grads[1]).norm() / grads[0].norm()).item()
    print(f"GRPO gradient: |cpu - cuda| / |cpu| = {rel:.2e} over {grads[0].numel()} entries")
    assert grads[0].norm() > 0 and rel < 1e-3


def test_training_on_cuda_follows_the_cpu_run(tmp_path):
    from nfcot.train import main
    flags = ["--vae-steps", "20", "--text-steps", "20", "--stage1-steps", "5", "--stage2-steps", "15",
             "--batch", "16", "--eval-every", "40", "--seed", "3", "--threads", "2"]
    hist = {}
    for dev in ("cpu", "cuda"):
        main(["--out", str(tmp_path / dev), "--device", dev, *flags])
        ck = torch.load(tmp_path / dev / "ckpt.pt", map_location="cpu")
        assert ck["args"]["device"] == dev
        hist[dev] = ck["history"][-1] if "history" in ck else json.loads((tmp_path / dev / "history.json").read_text())[-1]
    print("cpu", hist["cpu"], "\ncuda", hist["cuda"])
    assert hist["cpu"]["step"] == hist["cuda"]["step"] == 40
    for k in ("text_loss", "nf_loss"):
        assert abs(hist["cpu"][k] - hist["cuda"][k]) <= 0.02 * abs(hist["cpu"][k]) + 1e-3, k
