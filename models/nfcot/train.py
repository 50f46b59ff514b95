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
--device auto|cpu|cuda (nfcot/device.py): auto trains on CUDA when torch sees a GPU.

main() runs the stages in order: parse_args, seed_everything, build_nets (fresh or --resume),
pretrain_vae (stage 0), train_stages (stages T, 1, 2: one train_step each step; validate and save
every --eval-every), the final save and the --hf-out conversion.
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
from dataclasses import dataclass, replace

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import tokenizer as tk
from .data import build_batch
from .device import add_device_option, choose_device
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


def train_vae(vae: StepVAE, K: int, m: int, steps: int, seed: int, device: str = "cpu") -> float:
    rng = random.Random(seed)
    opt = torch.optim.Adam(vae.parameters(), lr=3e-3)
    rec = 0.0
    for i in range(steps):
        progs = [sample_program(rng, m) for _ in range(64)]
        st = torch.tensor([step_tokens(p, K) for p in progs]).to(device)
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
    from the model itself, slot by slot. Returns thoughts [picked rows, S, D]. The noise comes from
    `gen` on the CPU whatever the device, so a seed draws the same thoughts on either."""
    rows, bot = batch["latent_rows"][which], batch["bot_index"][which]
    dev = rows.device
    ids, th = batch["ids"][rows], torch.zeros(len(rows), batch["ids"].shape[1], model.config.thought_dim, device=dev)
    ist, pos, km = batch["is_thought"][rows], batch["positions"][rows], batch["key_mask"][rows]
    last = int(bot.max()) + K
    for t in range(K):
        h, _ = model(ids[:, :last], th[:, :last], ist[:, :last], pos[:, :last], km[:, :last])
        _, mu, ls = model.heads(h[torch.arange(len(rows), device=dev), bot + t])
        u = mu + torch.exp(ls) * temperature * torch.randn(mu.shape, generator=gen).to(dev)
        th[torch.arange(len(rows), device=dev), bot + 1 + t] = u
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


@dataclass
class Rngs:
    """One random stream per kind of draw, so that an option a run leaves off draws nothing and
    runs without it reproduce as they were."""
    gen: torch.Generator  # dequantisation noise and closed-loop picks and rollouts
    counterfactual: random.Random  # --counterfactual
    lengths: random.Random  # --stage2-lengths
    negatives: random.Random  # --stage2-negatives


@dataclass
class Nets:
    """Everything that trains, and the history a resumed checkpoint brings along."""
    cfg: ModelConfig
    model: NFCoTModel
    flow: ShallowFlow
    vae: StepVAE
    ahead_head: nn.Linear  # training only (never exported): see --ahead
    operand_head: nn.Linear  # see --operands
    key_head: nn.Linear  # see --keys
    prior_history: list

    def aux_params(self) -> list:
        return [*self.ahead_head.parameters(), *self.operand_head.parameters(), *self.key_head.parameters()]


def main(argv=None) -> None:
    args = parse_args(argv)
    rngs = seed_everything(args)
    os.makedirs(args.out, exist_ok=True)
    nets = build_nets(args)
    report_sizes(nets)
    t0 = time.time()
    pretrain_vae(nets, args)
    history = train_stages(nets, args, rngs, t0)
    save(args.out, nets, args, history)
    if args.hf_out:
        from .hf_write import convert_checkpoint
        convert_checkpoint(os.path.join(args.out, "ckpt.pt"), args.hf_out)
    print(f"done in {(time.time() - t0) / 60:.1f} min", flush=True)


def build_parser() -> argparse.ArgumentParser:
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
    add_device_option(ap)
    return ap


def parse_args(argv=None) -> argparse.Namespace:
    """The flags, checked before any work; --device resolved to what the run records (cpu or cuda)."""
    args = build_parser().parse_args(argv)
    if args.grow_layers and not args.resume:
        raise SystemExit("--grow-layers grows a trained checkpoint: give --resume")
    if args.stage2_negatives < 1:
        raise SystemExit(f"--stage2-negatives wants a weight >= 1, got {args.stage2_negatives}")
    length_weights(args.stage2_lengths)  # a bad spec stops here, not mid-run
    args.device = choose_device(args.device)
    return args


def seed_everything(args) -> Rngs:
    """Seeds torch and random for the run (model init, mode draws) and forks the streams of Rngs."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    return Rngs(torch.Generator().manual_seed(args.seed + 1), random.Random(args.seed + 2),
                random.Random(args.seed + 3), random.Random(args.seed + 4))


def build_nets(args) -> Nets:
    """A fresh model from the size flags, or the --resume checkpoint's (grown by --grow-layers), on
    the CPU first so that the seeded initial weights do not depend on the device. A resumed run
    keeps the checkpoint's VAE, so it trains none (args.vae_steps is recorded as 0)."""
    cfg = ModelConfig(vocab_size=len(tk.VOCAB), hidden_size=args.hidden, num_layers=args.layers,
                      intermediate_size=int(args.hidden * 2.75) // 16 * 16)
    K, D = cfg.num_thoughts, cfg.thought_dim
    model = NFCoTModel(cfg)
    flow = ShallowFlow(D, K, blocks=2)
    vae = StepVAE(cfg.vocab_size, D)
    ck, prior_history = {}, []
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
    # Each training-only head in its own RNG fork: every later draw, and so runs without it, as they were.
    with torch.random.fork_rng():
        ahead_head = nn.Linear(cfg.hidden_size, cfg.vocab_size)
    with torch.random.fork_rng():
        operand_head = nn.Linear(cfg.hidden_size, 2 * cfg.vocab_size)
    with torch.random.fork_rng():
        key_head = nn.Linear(cfg.hidden_size, cfg.vocab_size)
    for head, key in ((ahead_head, "ahead"), (operand_head, "operands"), (key_head, "keys")):
        if key in ck:
            head.load_state_dict(ck[key])
    nets = Nets(cfg, model, flow, vae, ahead_head, operand_head, key_head, prior_history)
    for mod in (model, flow, vae, ahead_head, operand_head, key_head):
        mod.to(args.device)
    return nets


def report_sizes(nets: Nets) -> None:
    def count(mod):
        return sum(p.numel() for p in mod.parameters())
    print(f"params: backbone+heads {count(nets.model):,} flow {count(nets.flow):,} vae {count(nets.vae):,}", flush=True)


def pretrain_vae(nets: Nets, args) -> None:
    """Stage 0: the step VAE, then frozen: its encoder gives every later stage its thought targets."""
    if args.vae_steps:
        train_vae(nets.vae, nets.cfg.num_thoughts, args.m, args.vae_steps, args.seed, args.device)
    for p in nets.vae.parameters():
        p.requires_grad_(False)


def split_params(nets: Nets) -> tuple[list, list]:
    """(backbone, latent) parameters: stage 1 freezes the first, and the second takes flow, thought
    projection, NF head and the training-only heads."""
    named = list(nets.model.named_parameters())
    backbone = [p for n, p in named if not n.startswith(("thought_proj", "nf_head"))]
    latent = [p for n, p in named if n.startswith(("thought_proj", "nf_head"))]
    return backbone, latent + list(nets.flow.parameters()) + nets.aux_params()


def stage_at(step: int, args) -> str:
    """The phase a step belongs to; the phases share one step count and one learning-rate schedule."""
    if step < args.text_steps:
        return "text"
    return "stage1" if step < args.text_steps + args.stage1_steps else "stage2"


def learning_rate(step: int, total: int, base: float) -> float:
    """200 steps of warm-up, then a cosine to a tenth of `base` over all phases together."""
    frac = step / total
    return base * min(1.0, (step + 1) / 200) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))


def draw_programs(stream, stage: str, step: int, args, lengths: list[float] | None, rngs: Rngs) -> list[Program]:
    """The step's programs. Curriculum: longer programs enter in the first half of the text stage;
    stage 2 thins the stream by --stage2-lengths and --stage2-negatives."""
    max_n = 6 if stage != "text" else min(6, 3 + int(8 * step / max(args.text_steps, 1)))
    progs = []
    while len(progs) < args.batch:
        p = next(stream)
        if len(p.steps) <= max_n and (stage != "stage2" or (keep_length(p, lengths, rngs.lengths)
                                                            and keep_negative(p, args.stage2_negatives, rngs.negatives))):
            progs.append(p)
    return progs


def draw_modes(stage: str, count: int) -> list[str]:
    """Text pretraining sees the text modes, stage 1 only latent rows, stage 2 all three."""
    if stage == "text":
        return random.choices(["none", "explicit"], [0.2, 0.8], k=count)
    if stage == "stage1":
        return ["latent"] * count
    return random.choices(["none", "explicit", "latent"], [0.15, 0.35, 0.5], k=count)


@dataclass
class LatentTargets:
    """The latent rows' thought targets in flow space and which of their slots are scored."""
    u: torch.Tensor  # [L, K, D]
    logdet: torch.Tensor  # [L]
    slot_pos: torch.Tensor  # [L, K] positions fed the thoughts
    scored: torch.Tensor  # [L, K] bool
    changed: torch.Tensor  # [L] bool: counterfactual rows


def latent_targets(nets: Nets, batch: dict, cf_slots: list[int], gen: torch.Generator) -> LatentTargets:
    """VAE means of the true steps plus N(0, DEQUANT^2) noise, through the flow. A changed row scores
    only the thoughts after the change: the prompt still implies the true thought j, and the flow's
    reversed block lets u at earlier slots depend on e_j."""
    dev, K = batch["ids"].device, nets.cfg.num_thoughts
    e = nets.vae.encode(batch["steps"])[0]
    u, logdet = nets.flow(e + DEQUANT * torch.randn(e.shape, generator=gen).to(dev))
    slot_pos = batch["bot_index"][:, None] + 1 + torch.arange(K, device=dev)[None]
    cf = torch.tensor(cf_slots, device=dev)[batch["latent_rows"]]
    changed = cf >= 0
    return LatentTargets(u, logdet, slot_pos, torch.arange(K, device=dev)[None] > cf[:, None], changed)


def closed_loop_thoughts(nets: Nets, batch: dict, lat: LatentTargets, step: int, args, gen) -> torch.Tensor:
    """Stage 2's thoughts fed to the latent rows: the flow targets, with a share of the rows given
    the model's own sampled thoughts instead (--closed-loop, --closed-loop-ramp)."""
    rows, K = batch["latent_rows"], nets.cfg.num_thoughts
    teacher = lat.u.detach()
    if args.closed_loop_ramp > 0:
        s2 = (step - args.text_steps - args.stage1_steps) / max(args.stage2_steps, 1)
        share = closed_loop_share(args.closed_loop, args.closed_loop_ramp, s2)
        pick = (torch.rand(len(rows), generator=gen) < share).to(rows.device)
        pick &= ~lat.changed  # own thoughts would follow the prompt, not the counterfactual
        own = rollout_thoughts(nets.model, batch, K, 0.9, gen, pick) if bool(pick.any()) else None
    else:
        # Every row rolled out, then the draw: the order of random draws the runs before
        # --closed-loop-ramp used, so their commands still reproduce them.
        own = rollout_thoughts(nets.model, batch, K, 0.9, gen, torch.ones(len(rows), dtype=torch.bool, device=rows.device))
        pick = (torch.rand(len(rows), generator=gen) < args.closed_loop).to(rows.device)
        pick &= ~lat.changed
        own = own[pick]
    if own is not None:
        teacher = teacher.clone()
        teacher[pick] = own[torch.arange(int(pick.sum()), device=rows.device)[:, None], lat.slot_pos[pick]]
    return teacher


def step_losses(nets: Nets, batch: dict, thoughts: torch.Tensor, lat: LatentTargets | None, stage: str, args) -> dict:
    """The forward pass and every loss of one step (zero where a loss is off or has no rows)."""
    K = nets.cfg.num_thoughts
    zero = torch.zeros((), device=thoughts.device)
    out = dict(text=zero, nf=zero, readback=zero, ahead=zero, operand=zero, keys=zero)
    taps = [] if (args.operands or args.keys) and stage == "stage2" else None
    h, _ = nets.model(batch["ids"], thoughts, batch["is_thought"], batch["positions"], batch["key_mask"], taps=taps)
    logits, mu, ls = nets.model.heads(h)
    out["text"] = text_nll(logits, batch["targets"], args.text_loss)
    if lat is None:
        return out
    rows = batch["latent_rows"]
    pred_pos = batch["bot_index"][:, None] + torch.arange(K, device=thoughts.device)[None]
    r = rows[:, None]
    out["nf"] = flow_nll(lat.u, lat.logdet, mu[r, pred_pos], ls[r, pred_pos], lat.scored, lat.changed)
    if args.readback and stage == "stage2":
        out["readback"] = readback_loss(logits, rows, lat.slot_pos, batch["steps"])
    if args.ahead and stage == "stage2":
        out["ahead"] = lookahead_loss(nets.ahead_head, nets.model.model.norm(h[r, pred_pos]), batch["steps"], lat.scored)
    if args.operands and taps is not None and bool((batch["operands"] != -100).any()):
        out["operand"] = operand_loss(nets.operand_head, taps[args.operand_layer - 1][r, pred_pos], batch["operands"])
    if args.keys and taps is not None:
        out["keys"] = key_loss(nets.key_head, taps[args.key_layer - 1][r, lat.slot_pos], batch["steps"])
    return out


def total_loss(losses: dict, stage: str, args) -> torch.Tensor:
    """Flow NLL + text NLL, 1:1, plus the weighted auxiliary losses. Stage 1 keeps the text loss
    out of the gradient (the backbone is frozen; it is still logged)."""
    text, nf = losses["text"], losses["nf"]
    loss = text + nf if stage != "stage1" else nf + text.detach() * 0
    return (loss + args.readback * losses["readback"] + args.ahead * losses["ahead"]
            + args.operands * losses["operand"] + args.keys * losses["keys"])


class LossLog:
    """Moving averages of the losses (EMA 0.95) and the progress line that shows them."""

    def __init__(self, args):
        self.args, self.ema = args, {}

    def add(self, losses: dict) -> None:
        for k, v in losses.items():
            v = v.item()
            self.ema[k] = v if k not in self.ema else 0.95 * self.ema[k] + 0.05 * v

    def line(self, stage: str, step: int, total: int, rate: float, lr: float, minutes: float) -> str:
        a, ema = self.args, self.ema
        return (f"[{stage}] {step + 1}/{total} text {ema['text']:.3f} nf/dim {ema['nf']:.3f} "
                + (f"readback {ema['readback']:.3f} " if a.readback else "")
                + (f"ahead {ema['ahead']:.3f} " if a.ahead else "")
                + (f"operand {ema['operand']:.3f} " if a.operands else "")
                + (f"keys {ema['keys']:.3f} " if a.keys else "")
                + f"{rate:,.0f} tok/s lr {lr:.1e} elapsed {minutes:.1f} min")


def validate(model: NFCoTModel, val: list[Program]) -> dict:
    """Greedy accuracy per mode on the validation split (the test split is for shipped models only)."""
    model.eval()
    accs = {m: accuracy(model, val, m)[0] for m in ("none", "explicit", "latent")}
    model.train()
    return accs


def train_step(nets: Nets, opt, backbone_params: list, batch: dict, cf_slots: list[int], stage: str, step: int,
               args, rngs: Rngs) -> dict:
    """One optimiser step of any phase; returns its losses."""
    for p in backbone_params:
        p.requires_grad_(stage != "stage1")  # stage 1 trains the latent parts on a frozen backbone
    rows = batch["latent_rows"]
    thoughts = torch.zeros(*batch["ids"].shape, nets.cfg.thought_dim, device=batch["ids"].device)
    lat = None
    if len(rows):
        lat = latent_targets(nets, batch, cf_slots, rngs.gen)
        teacher = lat.u.detach()
        if stage == "stage2" and args.closed_loop > 0:
            teacher = closed_loop_thoughts(nets, batch, lat, step, args, rngs.gen)
        thoughts[rows[:, None], lat.slot_pos] = teacher
    losses = step_losses(nets, batch, thoughts, lat, stage, args)
    # set_to_none: a frozen parameter then has no grad, so Adam's momentum and weight decay
    # leave it alone (torch 1.13 zeroes grads in place by default, which still moves it).
    opt.zero_grad(set_to_none=True)
    total_loss(losses, stage, args).backward()
    torch.nn.utils.clip_grad_norm_(list(nets.model.parameters()) + list(nets.flow.parameters()) + nets.aux_params(), 1.0)
    opt.step()
    return losses


def train_stages(nets: Nets, args, rngs: Rngs, t0: float) -> list:
    """Stages T, 1 and 2 in one loop over one AdamW and LR schedule; validation and a checkpoint
    every --eval-every steps and at the end. Returns the history (a resumed run's first)."""
    lengths = length_weights(args.stage2_lengths)
    val = split("validation", 300, args.m)
    stream = train_stream(args.seed, args.m)
    total = args.text_steps + args.stage1_steps + args.stage2_steps
    backbone_params, latent_params = split_params(nets)
    opt = torch.optim.AdamW([{"params": backbone_params}, {"params": latent_params}],
                            lr=args.lr, weight_decay=0.01, betas=(0.9, 0.98))
    history = list(nets.prior_history)
    log = LossLog(args)
    tokens = 0
    t_train = time.time()
    for step in range(total):
        stage = stage_at(step, args)
        lr = learning_rate(step, total, args.lr)
        for g in opt.param_groups:
            g["lr"] = lr
        progs = draw_programs(stream, stage, step, args, lengths, rngs)
        modes = draw_modes(stage, args.batch)
        cf_slots = [-1] * len(progs)
        if stage == "stage2" and args.counterfactual > 0:
            progs, cf_slots = counterfactual_rows(progs, modes, args.counterfactual, rngs.counterfactual, args.m)
        batch = {k: v.to(args.device) for k, v in build_batch(progs, modes, nets.cfg.num_thoughts).items()}
        log.add(train_step(nets, opt, backbone_params, batch, cf_slots, stage, step, args, rngs))
        tokens += int(batch["key_mask"].sum())
        msg = log.line(stage, step, total, tokens / (time.time() - t_train), lr, (time.time() - t0) / 60)
        if (step + 1) % args.eval_every == 0 or step == total - 1:
            accs = validate(nets.model, val)
            history.append({"step": step + 1, "minutes": (time.time() - t0) / 60, "tokens": tokens, **accs,
                            "text_loss": log.ema["text"], "nf_loss": log.ema["nf"]})
            progress(msg + " | val " + " ".join(f"{k} {v:.3f}" for k, v in accs.items()), final=True)
            print(json.dumps(history[-1]), flush=True)
            save(args.out, nets, args, history)
        elif step % 10 == 0:
            progress(msg)
        if args.stop_after and step + 1 >= args.stop_after:
            break
    return history


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


def save(out: str, nets: Nets, args, history: list) -> None:
    """The checkpoint (written whole, then renamed) that --resume, nfcot.export, nfcot.evaluate and
    hf_write read: CPU tensors whatever the device, so it loads anywhere."""
    def cpu(mod):
        sd = mod.state_dict()
        if args.device == "cpu":
            return sd
        out_sd = type(sd)((k, v.cpu()) for k, v in sd.items())
        out_sd._metadata = getattr(sd, "_metadata", None)
        return out_sd
    torch.save({"config": nets.cfg.to_dict(), "model": cpu(nets.model), "flow": cpu(nets.flow),
                "vae": cpu(nets.vae), "ahead": cpu(nets.ahead_head),
                "operands": cpu(nets.operand_head), "keys": cpu(nets.key_head), "args": vars(args),
                "history": history, "m": args.m, "dequant": DEQUANT}, os.path.join(out, "ckpt.pt.tmp"))
    os.replace(os.path.join(out, "ckpt.pt.tmp"), os.path.join(out, "ckpt.pt"))


if __name__ == "__main__":
    main()
