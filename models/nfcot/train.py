"""Train the NF-CoT trace model: step VAE, then text pretraining, then the recipe's two stages.

  /usr/bin/python3 -m nfcot.train --out runs/small   (from models/)

Stage 0 trains the step VAE (CoT encoder + thought decoder). Stage T pretrains the backbone on the
text modes (the recipe starts from a pretrained LLM; ours starts from scratch). Stage 1 freezes the
backbone and trains flow, thought projection and NF head; stage 2 trains everything on all modes,
feeding the model's own sampled thoughts back on part of the latent rows (closed loop).
Loss = flow NLL (per dimension) + text NLL, 1:1; thought targets get N(0, 0.3^2) dequantisation noise.
Stage 2 can add auxiliary losses and counterfactual traces that make the model use its thoughts
(--readback, --ahead, --operands, --keys, --counterfactual);
models/README.md says why and how the shipped model was continued with them.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import sys
import time
from dataclasses import replace

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import tokenizer as tk
from .data import build_batch
from .flow import ShallowFlow
from .generate import accuracy
from .model import ModelConfig, NFCoTModel, gaussian_log_prob
from .task import DEFAULT_M, Program, split, train_stream, sample_program, with_value
from .vae import StepVAE, step_tokens

DEQUANT = 0.3
OPERAND_LAYER = 4  # layers below the operand head (--operand-layer's default)
KEY_LAYER = 2  # layers below the key head (--key-layer's default)


def progress(msg: str, final: bool = False) -> None:
    sys.stderr.write("\r" + msg[:160].ljust(160) + ("\n" if final else ""))
    sys.stderr.flush()


def train_vae(vae: StepVAE, K: int, m: int, steps: int, seed: int) -> float:
    rng = random.Random(seed)
    opt = torch.optim.Adam(vae.parameters(), lr=3e-3)
    rec = 0.0
    for i in range(steps):
        progs = [sample_program(rng, m) for _ in range(64)]
        st = torch.tensor([step_tokens(p, K) for p in progs])
        loss, rec_t = vae.loss(st, DEQUANT, beta=0.02)
        opt.zero_grad()
        loss.backward()
        opt.step()
        rec = 0.9 * rec + 0.1 * rec_t.item() if i else rec_t.item()
        if i % 50 == 0 or i == steps - 1:
            progress(f"[vae] {i + 1}/{steps} rec {rec:.4f}", i == steps - 1)
    return rec


@torch.no_grad()
def rollout_thoughts(model, batch, K, temperature, gen, which):
    """Closed loop: sample the thoughts of the latent rows picked by `which` (bool over latent rows)
    from the model itself, slot by slot. Returns thoughts [picked rows, S, D]."""
    rows, bot = batch["latent_rows"][which], batch["bot_index"][which]
    ids, th = batch["ids"][rows], torch.zeros(len(rows), batch["ids"].shape[1], model.config.thought_dim)
    ist, pos, km = batch["is_thought"][rows], batch["positions"][rows], batch["key_mask"][rows]
    last = int(bot.max()) + K
    for t in range(K):
        h, _ = model(ids[:, :last], th[:, :last], ist[:, :last], pos[:, :last], km[:, :last])
        _, mu, ls = model.heads(h[torch.arange(len(rows)), bot + t])
        u = mu + torch.exp(ls) * temperature * torch.randn(mu.shape, generator=gen)
        th[torch.arange(len(rows)), bot + 1 + t] = u
    return th


def text_nll(logits, targets, weighting: str):
    """Mean next-token NLL over target tokens ("token") or over rows of per-row means ("row")."""
    if weighting == "token":
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100)
    ce = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100, reduction="none")
    mask = (targets != -100).float()
    per_row = (ce.view_as(mask) * mask).sum(1) / mask.sum(1).clamp(min=1)
    return per_row[mask.sum(1) > 0].mean()


def closed_loop_share(share: float, ramp: float, stage2_fraction: float) -> float:
    """Share of latent rows fed the model's own thoughts, `stage2_fraction` of the way through stage 2."""
    return share * (min(1.0, stage2_fraction / ramp) if ramp > 0 else 1.0)


def readback_loss(logits, rows, slot_pos, steps):
    """The LM head at the position fed thought t names the value that thought holds. Without it the
    model learnt to answer from the prompt and leave its thoughts unread (nfcot.thought_probe).
    The last thought is left out: its position predicts the answer. logits [B, S, V]; rows [L]
    latent rows; slot_pos [L, K] their thought positions; steps [L, K, 2] (variable, value) ids."""
    rb = logits[rows[:, None], slot_pos[:, :-1]]
    return F.cross_entropy(rb.flatten(0, 1), steps[:, :-1, 1].flatten())


def flow_nll(u, logdet, mu, log_sigma, scored, changed):
    """The recipe's flow NLL per dimension, -(log p(u | context) + log |det du/de|) / (K d), over the
    scored slots. The flow is fit on true traces only: a changed row (counterfactual_rows) trains
    mu and sigma, not the flow. Scoring some of its slots against a log-det over all of them let
    the flow gain by stretching the unscored ones (u grew 15-fold in the run that found it).
    u, mu, log_sigma [L, K, D]; logdet [L]; scored [L, K] bool; changed [L] bool."""
    K, D = u.shape[1], u.shape[2]
    target = torch.where(changed[:, None, None], u.detach(), u)
    lp = (gaussian_log_prob(target, mu, log_sigma) * scored).sum(-1) + logdet * ~changed
    return -(lp / (K * D)).mean()


def counterfactual_rows(progs: list[Program], modes: list[str], share: float, rng: random.Random,
                        m: int) -> tuple[list[Program], list[int]]:
    """Gives `share` of the latent rows a counterfactual trace (task.with_value): statement j's
    thought holds another value and the later thoughts and the answer follow from it. Only a
    model that reads its earlier thoughts can predict those; with true traces the prompt alone
    predicts every thought as well (nfcot.thought_probe), and the model learnt to use it.
    Returns the programs and per row the slot changed (-1: none)."""
    out, slots = [], []
    for p, mode in zip(progs, modes):
        j = -1
        if mode == "latent" and len(p.steps) > 1 and rng.random() < share:
            k = rng.randrange(len(p.steps) - 1)
            for _ in range(10):
                v = rng.randint(-m, m)
                cf = with_value(p, k, v, m) if v != p.steps[k].value else None
                if cf is not None:
                    p, j = cf, k
                    break
        out.append(p)
        slots.append(j)
    return out, slots


def length_weights(spec: str) -> list[float] | None:
    """`--stage2-lengths` ("1,1,2,3,4": weights of programs of 2..6 statements) -> the weights,
    None for the task's own uniform draw."""
    if not spec:
        return None
    w = [float(x) for x in spec.split(",")]
    if len(w) != 5 or min(w) < 0 or max(w) <= 0:
        raise SystemExit(f"--stage2-lengths wants 5 non-negative weights for 2..6 statements, got {spec!r}")
    return w


def keep_length(prog: Program, weights: list[float] | None, rng: random.Random) -> bool:
    """Thins the uniform stream of program lengths to `weights` (rejection: a program of n
    statements is kept with probability w_n / max w). Latent mode fails on the long programs, and
    slot t's thought is trained only by programs of more than t statements: a fifth of them for
    the last slot under the task's draw."""
    if weights is None:
        return True
    return rng.random() < weights[len(prog.steps) - 2] / max(weights)


def keep_negative(prog: Program, weight: float, rng: random.Random) -> bool:
    """Thins the stream so that programs holding a negative value are `weight` times as common,
    relative to the others, as in the task's draw. Latent mode errs most on them (a first wrong
    thought involves a negative operand or result in over half the test errors, on a sixth of the
    steps): the task draws them rarely. weight 1 keeps every program without drawing."""
    if weight == 1 or any(s.value < 0 for s in prog.steps):
        return True
    return rng.random() < 1 / weight


def lookahead_loss(head, normed_hidden, steps, keep=None):
    """A training-only head at the position that predicts thought t names the value thought t will
    hold (<eot> past the program's end): a classification signal for the computation that the
    NF head's Gaussian fit of the same thought gives only through a 16-dimensional regression.
    normed_hidden [L, K, H] at the K thought-predicting positions; steps [L, K, 2]; keep [L, K]
    bool, the slots scored (all when None)."""
    target = steps[:, :, 1] if keep is None else steps[:, :, 1].masked_fill(~keep, -100)
    return F.cross_entropy(head(normed_hidden).flatten(0, 1), target.flatten())


def operand_loss(head, hidden, operands):
    """A training-only head on an inner layer, at the position that predicts thought t, names the
    values of statement t's two operands: the look-ups among earlier thoughts, which the step's
    arithmetic in the layers above needs. hidden [L, K, H] (un-normed residual stream);
    operands [L, K, 2] token ids, -100 where not scored (data.operand_tokens)."""
    return F.cross_entropy(operand_logits(head, hidden).flatten(0, 2), operands.flatten(), ignore_index=-100)


def operand_logits(head, hidden):
    """The operand head on an inner layer's residual stream [..., H] -> logits [..., 2, vocab]."""
    return head(inner_norm(hidden)).view(*hidden.shape[:-1], 2, -1)


def inner_norm(hidden):
    """RMS-normalises an inner layer's residual stream for a training-only head."""
    return hidden * torch.rsqrt(hidden.pow(2).mean(-1, keepdim=True) + 1e-5)


def key_loss(head, hidden, steps):
    """A training-only head on a low layer, at the position fed thought t, names the variable that
    thought assigns. A later statement's operand is found among the thoughts by that name, and
    only the 16-dimensional thought carries it there (explicit mode writes it as a token).
    hidden [L, K, H] (un-normed residual stream) at the thought positions; steps [L, K, 2]."""
    target = steps[:, :, 0].masked_fill(steps[:, :, 0] == tk.EOT, -100)
    return F.cross_entropy(head(inner_norm(hidden)).flatten(0, 1), target.flatten(), ignore_index=-100)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--hf-out", help="also write the final model in the Hugging Face layout + NF-CoT extras "
                    "(nfcot/hf_write.py; what `nfcot.export --hf` reads)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--m", type=int, default=DEFAULT_M)
    ap.add_argument("--vae-steps", type=int, default=1500)
    ap.add_argument("--text-steps", type=int, default=2200)
    ap.add_argument("--stage1-steps", type=int, default=150)
    ap.add_argument("--stage2-steps", type=int, default=1300)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--closed-loop", type=float, default=0.5, help="share of latent rows fed own thoughts in stage 2")
    ap.add_argument("--closed-loop-ramp", type=float, default=0.0,
                    help="fraction of stage 2 over which that share rises from 0 (0: from the start). "
                    "Own thoughts are wrong early on; fed too soon they teach the model to ignore thoughts")
    ap.add_argument("--text-loss", choices=("row", "token"), default="token",
                    help="row: every sequence weighs the same (a latent row's answer is not outweighed by "
                    "an explicit row's 48 trace tokens); token: every target token weighs the same")
    ap.add_argument("--readback", type=float, default=0.0,
                    help="weight of the stage-2 read-back loss: the LM head at a thought names its value")
    ap.add_argument("--ahead", type=float, default=0.0,
                    help="weight of the stage-2 look-ahead loss: a training-only head at the position "
                    "that predicts thought t names the value thought t will hold")
    ap.add_argument("--counterfactual", type=float, default=0.0,
                    help="share of stage-2 latent rows given a counterfactual trace (one thought changed, "
                    "the later ones recomputed from it); such a row scores only the thoughts after the change")
    ap.add_argument("--operands", type=float, default=0.0,
                    help="weight of the stage-2 operand loss: a training-only head after layer "
                    "--operand-layer names statement t's operand values where thought t is predicted")
    ap.add_argument("--operand-layer", type=int, default=OPERAND_LAYER, help="layers below the operand head")
    ap.add_argument("--keys", type=float, default=0.0,
                    help="weight of the stage-2 key loss: a training-only head after layer --key-layer "
                    "names, at each thought, the variable it assigns")
    ap.add_argument("--key-layer", type=int, default=KEY_LAYER, help="layers below the key head")
    ap.add_argument("--stage2-lengths", default="",
                    help="stage 2 draws programs of 2..6 statements with these weights (e.g. 1,1,2,3,4) "
                    "instead of uniformly; evaluation keeps the task's distribution")
    ap.add_argument("--stage2-negatives", type=float, default=1.0,
                    help="stage 2 keeps a program holding a negative value this many times as often as "
                    "one without (e.g. 3; 1 = the task's draw); evaluation keeps the task's distribution")
    ap.add_argument("--stop-after", type=int, default=0,
                    help="stop after this many steps; the learning-rate schedule still spans them all")
    ap.add_argument("--eval-every", type=int, default=400)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--resume", help="continue from this checkpoint (VAE kept; give stage steps to run)")
    ap.add_argument("--grow-layers", type=int, default=0,
                    help="with --resume: insert this many decoder layers whose residual outputs start at "
                    "zero, so the grown model computes what the checkpoint did and trains on from there")
    ap.add_argument("--grow-at", type=int, default=-1,
                    help="layers below the inserted ones (default: on top of the last)")
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=6)
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed + 1)
    cf_rng = random.Random(args.seed + 2)  # its own stream: runs without --counterfactual draw as before
    len_rng = random.Random(args.seed + 3)  # likewise for --stage2-lengths
    neg_rng = random.Random(args.seed + 4)  # and for --stage2-negatives
    if args.grow_layers and not args.resume:
        raise SystemExit("--grow-layers grows a trained checkpoint: give --resume")
    if args.stage2_negatives < 1:
        raise SystemExit(f"--stage2-negatives wants a weight >= 1, got {args.stage2_negatives}")
    stage2_lengths = length_weights(args.stage2_lengths)
    os.makedirs(args.out, exist_ok=True)
    cfg = ModelConfig(vocab_size=len(tk.VOCAB), hidden_size=args.hidden, num_layers=args.layers,
                      intermediate_size=int(args.hidden * 2.75) // 16 * 16)
    K, D = cfg.num_thoughts, cfg.thought_dim
    model = NFCoTModel(cfg)
    flow = ShallowFlow(D, K, blocks=2)
    vae = StepVAE(cfg.vocab_size, D)
    prior_history = []
    if args.resume:
        ck = torch.load(args.resume, map_location="cpu")
        cfg = ModelConfig.from_dict(ck["config"])
        model = NFCoTModel(cfg)
        for mod, key in ((model, "model"), (flow, "flow"), (vae, "vae")):
            mod.load_state_dict(ck[key])
        if args.grow_layers:
            model = grow_layers(model, args.grow_layers, args.grow_at)
            cfg = model.config
        prior_history = ck.get("history", [])
        args.vae_steps = 0
    # Training only (not exported): see --ahead. Its own RNG fork keeps every later draw, and so
    # runs without it, as they were.
    with torch.random.fork_rng():
        ahead_head = nn.Linear(cfg.hidden_size, cfg.vocab_size)
    with torch.random.fork_rng():
        operand_head = nn.Linear(cfg.hidden_size, 2 * cfg.vocab_size)  # training only: see --operands
    with torch.random.fork_rng():
        key_head = nn.Linear(cfg.hidden_size, cfg.vocab_size)  # training only: see --keys
    if args.resume and "ahead" in ck:
        ahead_head.load_state_dict(ck["ahead"])
    if args.resume and "operands" in ck:
        operand_head.load_state_dict(ck["operands"])
    if args.resume and "keys" in ck:
        key_head.load_state_dict(ck["keys"])
    print(f"params: backbone+heads {sum(p.numel() for p in model.parameters()):,} flow "
          f"{sum(p.numel() for p in flow.parameters()):,} vae {sum(p.numel() for p in vae.parameters()):,}",
          flush=True)
    t0 = time.time()
    if args.vae_steps:
        train_vae(vae, K, args.m, args.vae_steps, args.seed)
    for p in vae.parameters():
        p.requires_grad_(False)

    val = split("validation", 300, args.m)
    stream = train_stream(args.seed, args.m)
    total = args.text_steps + args.stage1_steps + args.stage2_steps
    backbone_params = [p for n, p in model.named_parameters()
                       if not n.startswith(("thought_proj", "nf_head"))]
    latent_params = [p for n, p in model.named_parameters() if n.startswith(("thought_proj", "nf_head"))]
    aux_params = [*ahead_head.parameters(), *operand_head.parameters(), *key_head.parameters()]
    latent_params += list(flow.parameters()) + aux_params
    opt = torch.optim.AdamW([{"params": backbone_params}, {"params": latent_params}],
                            lr=args.lr, weight_decay=0.01, betas=(0.9, 0.98))
    history = list(prior_history)
    ema = {}
    tokens = 0
    t_train = time.time()
    for step in range(total):
        stage = "text" if step < args.text_steps else ("stage1" if step < args.text_steps + args.stage1_steps else "stage2")
        frac = step / total
        lr = args.lr * min(1.0, (step + 1) / 200) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))
        for g in opt.param_groups:
            g["lr"] = lr
        # Curriculum: longer programs enter in the first half of the text stage.
        max_n = 6 if stage != "text" else min(6, 3 + int(8 * step / max(args.text_steps, 1)))
        progs = []
        while len(progs) < args.batch:
            p = next(stream)
            if len(p.steps) <= max_n and (stage != "stage2" or (keep_length(p, stage2_lengths, len_rng)
                                                                and keep_negative(p, args.stage2_negatives, neg_rng))):
                progs.append(p)
        if stage == "text":
            modes = random.choices(["none", "explicit"], [0.2, 0.8], k=args.batch)
        elif stage == "stage1":
            modes = ["latent"] * args.batch
        else:
            modes = random.choices(["none", "explicit", "latent"], [0.15, 0.35, 0.5], k=args.batch)
        cf_slots = [-1] * len(progs)
        if stage == "stage2" and args.counterfactual > 0:
            progs, cf_slots = counterfactual_rows(progs, modes, args.counterfactual, cf_rng, args.m)
        batch = build_batch(progs, modes, K)
        freeze = stage == "stage1"
        for p in backbone_params:
            p.requires_grad_(not freeze)
        rows = batch["latent_rows"]
        thoughts = torch.zeros(*batch["ids"].shape, D)
        nf_loss = readback = ahead = operand = keys = torch.zeros(())
        if len(rows):
            e = vae.encode(batch["steps"])[0]
            u, logdet = flow(e + DEQUANT * torch.randn(e.shape, generator=gen))
            slot_pos = batch["bot_index"][:, None] + 1 + torch.arange(K)[None]
            cf = torch.tensor(cf_slots)[rows]
            changed = cf >= 0
            # A changed row scores only the thoughts after the change: the prompt still implies the
            # true thought j, and the flow's reversed block lets u at earlier slots depend on e_j.
            scored = torch.arange(K)[None] > cf[:, None]
            teacher = u.detach()
            if stage == "stage2" and args.closed_loop > 0:
                if args.closed_loop_ramp > 0:
                    s2 = (step - args.text_steps - args.stage1_steps) / max(args.stage2_steps, 1)
                    pick = torch.rand(len(rows), generator=gen) < closed_loop_share(
                        args.closed_loop, args.closed_loop_ramp, s2)
                    pick &= ~changed  # own thoughts would follow the prompt, not the counterfactual
                    own = rollout_thoughts(model, batch, K, 0.9, gen, pick) if bool(pick.any()) else None
                else:
                    # Every row rolled out, then the draw: the order of random draws the runs
                    # before --closed-loop-ramp used, so their commands still reproduce them.
                    own = rollout_thoughts(model, batch, K, 0.9, gen, torch.ones(len(rows), dtype=torch.bool))
                    pick = torch.rand(len(rows), generator=gen) < args.closed_loop
                    pick &= ~changed
                    own = own[pick]
                if own is not None:
                    teacher = teacher.clone()
                    teacher[pick] = own[torch.arange(int(pick.sum()))[:, None], slot_pos[pick]]
            thoughts[rows[:, None], slot_pos] = teacher
        taps = [] if (args.operands or args.keys) and stage == "stage2" else None
        h, _ = model(batch["ids"], thoughts, batch["is_thought"], batch["positions"], batch["key_mask"], taps=taps)
        logits, mu, ls = model.heads(h)
        text_loss = text_nll(logits, batch["targets"], args.text_loss)
        if len(rows):
            pred_pos = batch["bot_index"][:, None] + torch.arange(K)[None]
            r = rows[:, None]
            nf_loss = flow_nll(u, logdet, mu[r, pred_pos], ls[r, pred_pos], scored, changed)
            if args.readback and stage == "stage2":
                readback = readback_loss(logits, rows, slot_pos, batch["steps"])
            if args.ahead and stage == "stage2":
                ahead = lookahead_loss(ahead_head, model.model.norm(h[r, pred_pos]), batch["steps"], scored)
            if args.operands and taps is not None and bool((batch["operands"] != -100).any()):
                operand = operand_loss(operand_head, taps[args.operand_layer - 1][r, pred_pos], batch["operands"])
            if args.keys and taps is not None:
                keys = key_loss(key_head, taps[args.key_layer - 1][r, slot_pos], batch["steps"])
        loss = text_loss + nf_loss if stage != "stage1" else nf_loss + text_loss.detach() * 0
        loss = loss + args.readback * readback + args.ahead * ahead + args.operands * operand + args.keys * keys
        # set_to_none: a frozen parameter then has no grad, so Adam's momentum and weight decay
        # leave it alone (torch 1.13 zeroes grads in place by default, which still moves it).
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(model.parameters()) + list(flow.parameters()) + aux_params, 1.0)
        opt.step()
        tokens += int(batch["key_mask"].sum())
        for k, v in (("text", text_loss.item()), ("nf", nf_loss.item()), ("readback", readback.item()),
                     ("ahead", ahead.item()), ("operand", operand.item()), ("keys", keys.item())):
            ema[k] = v if k not in ema else 0.95 * ema[k] + 0.05 * v
        rate = tokens / (time.time() - t_train)
        msg = (f"[{stage}] {step + 1}/{total} text {ema['text']:.3f} nf/dim {ema['nf']:.3f} "
               + (f"readback {ema['readback']:.3f} " if args.readback else "")
               + (f"ahead {ema['ahead']:.3f} " if args.ahead else "")
               + (f"operand {ema['operand']:.3f} " if args.operands else "")
               + (f"keys {ema['keys']:.3f} " if args.keys else "")
               + f"{rate:,.0f} tok/s lr {lr:.1e} elapsed {(time.time() - t0) / 60:.1f} min")
        if (step + 1) % args.eval_every == 0 or step == total - 1:
            model.eval()
            accs = {m: accuracy(model, val, m)[0] for m in ("none", "explicit", "latent")}
            model.train()
            history.append({"step": step + 1, "minutes": (time.time() - t0) / 60, "tokens": tokens, **accs,
                            "text_loss": ema["text"], "nf_loss": ema["nf"]})
            msg += " | val " + " ".join(f"{k} {v:.3f}" for k, v in accs.items())
            progress(msg, final=True)
            print(json.dumps(history[-1]), flush=True)
            save(args.out, model, flow, vae, cfg, args, history, ahead_head, operand_head, key_head)
        elif step % 10 == 0:
            progress(msg)
        if args.stop_after and step + 1 >= args.stop_after:
            break
    save(args.out, model, flow, vae, cfg, args, history, ahead_head, operand_head, key_head)
    if args.hf_out:
        from .hf_write import convert_checkpoint
        convert_checkpoint(os.path.join(args.out, "ckpt.pt"), args.hf_out)
    print(f"done in {(time.time() - t0) / 60:.1f} min", flush=True)


def grow_layers(model, count, at=-1):
    """A copy of model with count decoder layers inserted after its first `at` layers (-1: on top).
    The new layers' o_proj and down_proj start at zero, so each adds nothing to the residual stream
    and the grown model's outputs equal the old one's; training then grows them from there."""
    c = model.config
    at = c.num_layers if at < 0 else at
    # Not below layer 0: its positional heads are tied to index 0 (model.layer0_bias).
    if not 1 <= at <= c.num_layers or count < 1:
        raise ValueError(f"cannot insert {count} layers after layer {at} of {c.num_layers} (1..{c.num_layers})")
    grown = NFCoTModel(replace(c, num_layers=c.num_layers + count))
    old = model.state_dict()
    new = {}
    for name, value in grown.state_dict().items():
        m = re.match(r"model\.layers\.(\d+)\.(.*)", name)
        if m is None:
            new[name] = old[name]
            continue
        i, rest = int(m.group(1)), m.group(2)
        if i < at:
            new[name] = old[f"model.layers.{i}.{rest}"]
        elif i >= at + count:
            new[name] = old[f"model.layers.{i - count}.{rest}"]
        elif rest in ("self_attn.o_proj.weight", "mlp.down_proj.weight"):
            new[name] = torch.zeros_like(value)
        else:
            new[name] = value
    grown.load_state_dict(new)
    return grown


def save(out, model, flow, vae, cfg, args, history, ahead_head, operand_head, key_head):
    torch.save({"config": cfg.to_dict(), "model": model.state_dict(), "flow": flow.state_dict(),
                "vae": vae.state_dict(), "ahead": ahead_head.state_dict(),
                "operands": operand_head.state_dict(), "keys": key_head.state_dict(), "args": vars(args),
                "history": history, "m": args.m, "dequant": DEQUANT}, os.path.join(out, "ckpt.pt.tmp"))
    os.replace(os.path.join(out, "ckpt.pt.tmp"), os.path.join(out, "ckpt.pt"))


if __name__ == "__main__":
    main()
