import math

import torch
import torch.nn.functional as F

from nfcot import tokenizer as tk
from nfcot.task import Program, Step, split
from nfcot.vae import StepVAE, decode_steps, step_tokens

PROG = Program((Step("a", "5", "", 5), Step("b", "a * 3", "5 * 3", 15)))


def test_steps_are_variable_value_pairs_then_end_steps():
    st = step_tokens(PROG, 4)
    assert st == [[tk.TOKEN_ID["a"], tk.TOKEN_ID["5"]], [tk.TOKEN_ID["b"], tk.TOKEN_ID["15"]], [tk.EOT, tk.EOT], [tk.EOT, tk.EOT]]
    assert decode_steps(st) == "a = 5\nb = 15"


def test_loss_is_reconstruction_plus_beta_kl():
    """The loss against the formula, the same noise drawn: CE of the decoded sample
    z = mean + eps * (sigma + noise), plus beta * KL(N(mean, sigma^2) || N(0, 1)) per step."""
    torch.manual_seed(0)
    vae = StepVAE(len(tk.VOCAB), 16)
    steps = torch.tensor([step_tokens(p, 6) for p in split("validation", 8, 20)])
    torch.manual_seed(1)
    loss, rec = vae.loss(steps, 0.3, 0.02)
    mean, logvar = vae.encode(steps)
    torch.manual_seed(1)
    z = mean + torch.randn_like(mean) * (torch.exp(0.5 * logvar) + 0.3)
    want_rec = F.cross_entropy(vae.decode_logits(z).reshape(-1, len(tk.VOCAB)), steps.reshape(-1))
    kl = 0.5 * (mean ** 2 + logvar.exp() - 1 - logvar).sum(-1).mean()
    assert torch.allclose(rec, want_rec) and torch.allclose(loss, want_rec + 0.02 * kl)
    assert abs(rec.item() - math.log(len(tk.VOCAB))) < 0.1  # untrained: about uniform over the vocabulary
    # Without noise and with beta 0 the loss is the reconstruction of the sample alone.
    torch.manual_seed(1)
    loss0, rec0 = vae.loss(steps, 0.0, 0.0)
    assert torch.equal(loss0, rec0)


def test_training_lowers_the_loss_and_the_means_decode_to_their_steps(trained_vae):
    vae, rec = trained_vae
    assert round(rec, 3) == 0.136  # the running reconstruction loss after 150 seeded steps (from 5.5)
    progs = split("validation", 100, 20)
    steps = torch.tensor([step_tokens(p, 6) for p in progs])
    with torch.no_grad():
        pred = vae.decode_logits(vae.encode(steps)[0]).argmax(-1)
    right = (pred == steps).all(-1)
    assert int(right.sum()) == 589 and right.numel() == 600  # 98%; an untrained VAE gets none
