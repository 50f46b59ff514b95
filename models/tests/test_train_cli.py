"""nfcot.train end to end through its command line on a tiny model, on the CPU: every stage (VAE,
text, stage 1, stage 2 with every optional loss and stream filter, then a resumed and grown run).
The numbers are the ones the trainer recorded before its main() was split into stages (captured
at 0de641f); the split kept them to the last bit on the machine that captured them, so a change
here means the training changed. Losses get a 1e-5 relative tolerance for other CPUs' kernels."""
import json
import os
import subprocess
import sys

import pytest
import torch

MODELS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

FIRST = ["--hidden", "32", "--layers", "2", "--vae-steps", "20", "--text-steps", "6", "--stage1-steps", "2",
         "--stage2-steps", "6", "--batch", "8", "--eval-every", "5", "--threads", "1", "--lr", "3e-2",
         "--readback", "1", "--ahead", "1", "--counterfactual", "0.5", "--operands", "1", "--operand-layer", "1",
         "--keys", "1", "--key-layer", "1", "--closed-loop", "0.3", "--closed-loop-ramp", "0.5",
         "--stage2-lengths", "1,1,2,3,4", "--stage2-negatives", "2", "--text-loss", "row", "--seed", "3",
         "--device", "cpu"]
RESUMED = ["--grow-layers", "1", "--text-steps", "0", "--stage1-steps", "0", "--stage2-steps", "4", "--batch", "8",
           "--eval-every", "2", "--threads", "1", "--lr", "1e-2", "--closed-loop", "0.5", "--seed", "4",
           "--device", "cpu"]

# (step, tokens, correct of 300 validation programs per mode none/explicit/latent, text loss, nf loss)
FIRST_HISTORY = [(5, 2352, (0, 0, 0), 5.50378785187602, 0.0),
                 (10, 4476, (2, 7, 6), 5.499350798226274, 0.273373274423182),
                 (14, 6477, (6, 1, 0), 5.48255161723741, 0.4540255477649285)]
RESUMED_HISTORY = [(2, 961, (8, 0, 0), 5.365636968612671, 1.5356336653232574),
                   (4, 1673, (8, 0, 0), 5.36587032353878, 1.5236181425601243)]


def train(*argv):
    r = subprocess.run([sys.executable, "-m", "nfcot.train", *argv], cwd=MODELS, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout.splitlines()


def check_history(entries, want):
    assert len(entries) == len(want)
    for e, (step, tokens, right, text, nf) in zip(entries, want):
        assert (e["step"], e["tokens"]) == (step, tokens)
        assert [round(e[m] * 300) for m in ("none", "explicit", "latent")] == list(right), e
        assert e["text_loss"] == pytest.approx(text, rel=1e-5) and e["nf_loss"] == pytest.approx(nf, rel=1e-5, abs=1e-12)


def test_a_tiny_training_through_the_cli_records_the_same_numbers(tmp_path):
    first, resumed = tmp_path / "first", tmp_path / "resumed"
    out = train("--out", str(first), *FIRST)
    assert out[0] == "params: backbone+heads 40,064 flow 57,280 vae 150,668"
    printed = [json.loads(line) for line in out if line.startswith("{")]
    check_history(printed, FIRST_HISTORY)
    assert out[-1].startswith("done in ")
    ck = torch.load(first / "ckpt.pt")
    assert set(ck) == {"config", "model", "flow", "vae", "ahead", "operands", "keys", "args", "history", "m", "dequant"}
    assert ck["history"] == printed and ck["m"] == 20 and ck["dequant"] == 0.3
    assert ck["args"]["device"] == "cpu" and ck["args"]["vae_steps"] == 20 and ck["args"]["stage2_lengths"] == "1,1,2,3,4"
    assert (ck["config"]["hidden_size"], ck["config"]["num_layers"], ck["config"]["intermediate_size"]) == (32, 2, 80)

    out = train("--out", str(resumed), "--resume", str(first / "ckpt.pt"), *RESUMED)
    assert out[0] == "params: backbone+heads 50,880 flow 57,280 vae 150,668"  # one layer grown
    ck2 = torch.load(resumed / "ckpt.pt")
    assert ck2["history"][:3] == printed  # the resumed run's history follows the checkpoint's
    check_history(ck2["history"][3:], RESUMED_HISTORY)
    assert ck2["config"]["num_layers"] == 3 and ck2["args"]["vae_steps"] == 0  # a resumed run keeps the VAE
    assert all(torch.equal(v, ck["vae"][k]) for k, v in ck2["vae"].items())
