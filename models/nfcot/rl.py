"""GRPO on the program-tracing task with an execution reward, nfcot-serve as the rollout engine.

Every rollout goes through the running server over HTTP (chat completions in latent mode, n = the
group size, thoughts returned with their vectors and log-probs); the gradient comes from the
PyTorch reference model. Before each update the trainer recomputes log p(thoughts, answer)
teacher-forced and stops with a message if any trajectory differs from the server's numbers by
more than --tol (the server would be sampling from other weights than the ones being trained).
After each update it exports the new backbone and pushes it to the server (POST /admin/weights),
so the next batch is sampled on-policy. Validation accuracy (never the test split) picks `best/`.

  npm start -- --admin-key K &                        # the server, serving models/nfcot-trace-small
  /usr/bin/python3 -m nfcot.rl --server http://127.0.0.1:8000 --admin-key K --out runs/rl1

Resumable (rerun the same command: it continues from runs/rl1/state.pt and pushes its weights
first); deterministic for a seed (programs and server sampling seeds derive from --seed and the step).
"""
from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import sys
import time

import numpy as np
import torch

from . import tokenizer as tk
from .device import add_device_option, choose_device
from .export import export_weights
from .generate import parse_answer
from .grpo import group_advantages, grpo_loss, k3, select_groups
from .provenance import code_state
from .report import write_json
from .rl_client import Server
from .serve_eval import evaluate
from .rl_plot import plot_history
from .rl_score import Trajectory, decode_vector, score
from .task import is_train_source, sample_program, split


class LogProbMismatch(SystemExit):
    pass


def draw_prompts(seed: int, step: int, count: int, lengths: list[float] | None):
    """The step's programs: training draws only (held-out bucket excluded), lengths weighted.
    A fresh generator per step, so a resumed run draws what an uninterrupted one would."""
    rng = random.Random(seed * 1_000_003 + step)
    out = []
    while len(out) < count:
        p = sample_program(rng)
        if not is_train_source(p.source()):
            continue
        if lengths is not None and rng.random() >= lengths[len(p.steps) - 2] / max(lengths):
            continue
        out.append(p)
    return out


def answer_ids(tokens: list[dict]) -> list[int]:
    """Token ids of a choice's logprobs, asked for as "token_id:<id>" (return_tokens_as_token_ids):
    a token's text cannot name it (a special token sampled in the answer has empty text)."""
    out = []
    for t in tokens:
        m = re.fullmatch(r"token_id:(\d+)", t["token"])
        if m is None or int(m.group(1)) >= len(tk.VOCAB):
            raise LogProbMismatch(f"the server emitted token {t['token']!r}: not a token_id:<id> of the trainer's vocabulary")
        out.append(int(m.group(1)))
    return out


def rollouts(server: Server, progs, args, step: int):
    jobs = [dict(source=p.source(), mode="latent", n=args.group, seed=args.seed * 1_000_003 + step * 1_000 + i,
                 latent_temperature=args.latent_temperature, text_temperature=args.text_temperature,
                 max_tokens=args.max_tokens) for i, p in enumerate(progs)]
    return server.chat_many(jobs)


def to_trajectories(progs, responses, expected_version: str):
    trajs, server_lp, rewards = [], [], []
    for p, r in zip(progs, responses):
        if r["weights_version"] != expected_version:
            raise LogProbMismatch(f"the server answered with weights {r['weights_version']}, the trainer holds "
                                  f"{expected_version}: another client changed its weights; stopping.")
        prompt = tk.prompt_ids(p.source(), "latent")
        row = []
        for c in r["choices"]:
            toks = c["logprobs"]["content"] if c["logprobs"] else []
            answer = answer_ids(toks)
            th = c["thoughts"]
            trajs.append(Trajectory(prompt, np.stack([decode_vector(v) for v in th["vectors"]]), answer))
            server_lp.append((th["log_prob"], th["behaviour_log_prob"], sum(t["logprob"] for t in toks)))
            row.append(1.0 if parse_answer(c["message"]["content"]) == p.answer else 0.0)
        rewards.append(row)
    return trajs, torch.tensor(server_lp, dtype=torch.float64), torch.tensor(rewards, dtype=torch.float64)


def check_agreement(s: dict, server_lp: torch.Tensor, tol: float, step: int, version: str) -> float:
    """The recomputed log p(thoughts, answer), at T_z = 1 and at the sampling T_z, against the
    server's, per trajectory. Returns the largest difference; raises past tol."""
    ours = torch.stack([s["thought_lp1"].sum(1) + s["answer_lp"], s["thought_lpT"].sum(1) + s["answer_lp"]], 1).detach().cpu()
    theirs = torch.stack([server_lp[:, 0] + server_lp[:, 2], server_lp[:, 1] + server_lp[:, 2]], 1)
    diff = (ours - theirs).abs()
    worst = float(diff.max())
    if not worst <= tol:
        i, j = divmod(int(diff.argmax()), 2)
        what = ["log p(thoughts, answer) at T_z = 1", "the behaviour log p(thoughts, answer) at the sampling T_z"][j]
        raise LogProbMismatch(
            f"step {step}: log-prob mismatch on trajectory {i}: {what} is {float(theirs[i, j]):.6f} on the server "
            f"(weights {version}) and {float(ours[i, j]):.6f} in PyTorch (|diff| {worst:.3g} > --tol {tol}). The server is "
            f"not sampling from the weights being trained (another model directory, a push that did not land, "
            f"or a numerics bug); stopping before the update.")
    return worst


def policy_terms(model, trajs, T, device):
    s = score(model, trajs, T, device)
    return s, s["thought_lpT"].sum(1) + s["answer_lp"]


def kl_per_trajectory(s_new: dict, s_ref: dict, n: int) -> torch.Tensor:
    per_thought = k3(s_ref["thought_lpT"], s_new["thought_lpT"]).sum(1)
    tokens = k3(s_ref["token_lp"], s_new["token_lp"])
    return per_thought + torch.zeros(n, dtype=tokens.dtype, device=tokens.device).index_add(0, s_new["token_owner"], tokens)


def holds_modes(e: dict, start: dict, modes: list[str]) -> bool:
    """The update may be chosen only if its validation accuracy in each of `modes` is at least the
    starting model's (the issue's "no loss in explicit and none"; the start itself qualifies)."""
    return all(e[m] >= start[m] for m in modes)


LATENT_PARAMETERS = ("nf_head.", "thought_proj.")


def trainable_parameters(model, which: str) -> list:
    """The parameters an update may change. "latent": only the NF head and the thought projection,
    which explicit and none replies never read, so those two modes stay exactly as they were; the
    rest is frozen (no gradient computed). "all": every parameter."""
    if which == "all":
        return list(model.parameters())
    if which != "latent":
        raise ValueError(f"--train takes all or latent, got {which!r}")
    out = []
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith(LATENT_PARAMETERS))
        if p.requires_grad:
            out.append(p)
    return out


def save_state(path: str, state: dict) -> None:
    torch.save(state, path + ".tmp")
    os.replace(path + ".tmp", path)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--server", required=True, help="the running nfcot-serve, e.g. http://127.0.0.1:8000")
    ap.add_argument("--admin-key", default=os.environ.get("NFCOT_ADMIN_KEY"), help="the server's --admin-key (or NFCOT_ADMIN_KEY)")
    ap.add_argument("--init", default="nfcot-trace-small", help="model directory the server starts from (weights read from its ONNX)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=100, help="updates in all (a resumed run counts the ones done)")
    ap.add_argument("--prompts", type=int, default=16, help="programs per batch")
    ap.add_argument("--group", type=int, default=8, help="rollouts per program (GRPO group size)")
    ap.add_argument("--oversample", type=int, default=1,
                    help="draw this many times --prompts programs and train on --prompts groups, those whose "
                         "rewards differ first (dynamic sampling; 1: off)")
    ap.add_argument("--latent-temperature", type=float, default=0.9)
    ap.add_argument("--text-temperature", type=float, default=1.0, help="answer tokens are sampled from the policy at this temperature")
    ap.add_argument("--max-tokens", type=int, default=8)
    ap.add_argument("--lengths", default="1,1,2,4,8", help="weights of program lengths 2..6 (the train stream's); 'task' = the task's draw")
    ap.add_argument("--lr", type=float, default=1e-5)
    ap.add_argument("--train", choices=["all", "latent"], default="all",
                    help="what an update changes: every parameter, or only the NF head and thought projection "
                         "(explicit and none replies then stay exactly the starting model's)")
    ap.add_argument("--clip", type=float, default=0.2)
    ap.add_argument("--kl-coef", type=float, default=0.0, help="weight of the KL term to the starting model (0: off)")
    ap.add_argument("--inner-steps", type=int, default=1, help="gradient steps per batch (ratios leave 1 from the second)")
    ap.add_argument("--max-grad-norm", type=float, default=1.0)
    ap.add_argument("--tol", type=float, default=1e-3, help="largest allowed |server - PyTorch| log-prob per trajectory")
    ap.add_argument("--eval-every", type=int, default=0, help="validation every N updates (0: only at the start and end)")
    ap.add_argument("--eval-count", type=int, default=300)
    ap.add_argument("--hold-modes", default="explicit,none",
                    help="modes whose validation accuracy a chosen update must keep at the start's or above ('': none)")
    ap.add_argument("--seed", type=int, default=0)
    add_device_option(ap)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--time-budget", type=float, default=0, help="stop after this many minutes (0: no limit)")
    args = ap.parse_args(argv)
    args.device = choose_device(args.device)  # recorded as cpu or cuda
    torch.set_num_threads(args.threads)
    if args.latent_temperature <= 0:
        ap.error("--latent-temperature must be > 0: at T_z = 0 the thoughts have no density to train")
    lengths = None if args.lengths == "task" else [float(x) for x in args.lengths.split(",")]
    hold_modes = [m for m in args.hold_modes.split(",") if m]
    if any(m not in ("explicit", "none", "latent_sampled") for m in hold_modes):
        ap.error(f"--hold-modes takes explicit, none, latent_sampled; got {args.hold_modes!r}")
    os.makedirs(os.path.join(args.out, "weights"), exist_ok=True)
    from .onnx_weights import load_model_dir

    server = Server(args.server, args.admin_key)
    model, _, _, _ = load_model_dir(args.init)
    ref = None
    if args.kl_coef > 0:
        ref, _, _, _ = load_model_dir(args.init)
        ref.to(args.device).eval()
    model.to(args.device)
    params = trainable_parameters(model, args.train)
    opt = torch.optim.Adam(params, lr=args.lr)
    state_path = os.path.join(args.out, "state.pt")
    history: list[dict] = []
    evals: list[dict] = []
    step = 0
    version = server.weights()["version"]
    weights_dir = args.init
    best = {"step": 0, "latent_greedy": -1.0, "dir": args.init}
    if os.path.exists(state_path):
        st = torch.load(state_path, map_location=args.device)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        step, history, evals, best = st["step"], st["history"], st["evals"], st["best"]
        version, weights_dir = st["version"], st["weights_dir"]
        if server.weights()["version"] != version:
            print(f"resuming at update {step}: pushing {weights_dir} as {version}", flush=True)
            server.push(os.path.abspath(weights_dir), version)
    else:
        torch.manual_seed(args.seed)
    run_name = os.path.basename(os.path.normpath(args.out))
    # The admin key is a credential: never written down.
    raw = list(sys.argv[1:] if argv is None else argv)
    for i, a in enumerate(raw):
        if a == "--admin-key" and i + 1 < len(raw):
            raw[i + 1] = "***"
        elif a.startswith("--admin-key="):
            raw[i] = "--admin-key=***"
    write_json(os.path.join(args.out, "run.json"),
               {"argv": raw, "args": {**vars(args), "admin_key": "***" if args.admin_key else None}, **code_state()})
    val = split("validation", args.eval_count)

    def run_eval():
        t = time.time()
        e = {"step": step, "version": version, **evaluate(server, val, args.seed)}
        evals.append(e)
        print(f"eval @ {step} ({version}, {time.time() - t:.0f}s): validation latent T_z=0 {e['latent_greedy']:.3f} | "
              f"latent pass@1 {e['latent_sampled']:.3f} | explicit {e['explicit']:.3f} | none {e['none']:.3f}", flush=True)
        if e["latent_greedy"] > best["latent_greedy"] and holds_modes(e, evals[0], hold_modes):
            best.update(step=step, latent_greedy=e["latent_greedy"], dir=weights_dir)
            if os.path.abspath(weights_dir) != os.path.abspath(args.init):
                dst = os.path.join(args.out, "best")
                shutil.rmtree(dst, ignore_errors=True)
                shutil.copytree(weights_dir, dst)

    def checkpoint():
        """What a rerun of the same command resumes from (the admin key is never written)."""
        save_state(state_path, {"model": model.state_dict(), "opt": opt.state_dict(), "step": step, "history": history,
                                "evals": evals, "best": best, "version": version, "weights_dir": weights_dir,
                                "args": {**vars(args), "admin_key": None}})

    if not evals:
        run_eval()
    t_start = time.time()
    while step < args.steps:
        if args.time_budget and time.time() - t_start > args.time_budget * 60:
            print(f"time budget of {args.time_budget} min spent", flush=True)
            break
        t0 = time.time()
        drawn = draw_prompts(args.seed, step, args.prompts * args.oversample, lengths)
        responses = rollouts(server, drawn, args, step)
        t_roll = time.time() - t0
        trajs, server_lp, drawn_rewards = to_trajectories(drawn, responses, version)
        # Accuracy is reported over every rollout drawn; the update sees the selected groups.
        kept = select_groups(drawn_rewards, args.prompts)
        progs = [drawn[g] for g in kept]
        rows = [g * args.group + j for g in kept for j in range(args.group)]
        trajs, server_lp, rewards = [trajs[i] for i in rows], server_lp[rows], drawn_rewards[kept]
        t1 = time.time()
        model.train()
        s, logp = policy_terms(model, trajs, args.latent_temperature, args.device)
        worst = check_agreement(s, server_lp, args.tol, step, version)
        adv = group_advantages(rewards).reshape(-1).to(args.device)
        logp_old = logp.detach()
        s_ref = None
        if ref is not None:
            with torch.no_grad():
                s_ref = score(ref, trajs, args.latent_temperature, args.device)
        stats = {}
        update = bool((adv != 0).any()) or ref is not None
        for inner in range(args.inner_steps if update else 0):
            if inner > 0:
                s, logp = policy_terms(model, trajs, args.latent_temperature, args.device)
            kl = kl_per_trajectory(s, s_ref, len(trajs)) if s_ref is not None else None
            loss, stats = grpo_loss(logp, logp_old, adv, args.clip, kl, args.kl_coef)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, args.max_grad_norm)
            opt.step()
        t_upd = time.time() - t1
        step += 1
        t2 = time.time()
        if update:
            version = f"{run_name}-{step:05d}"
            new_dir = os.path.join(args.out, "weights", version)
            export_weights(args.init, model.cpu(), new_dir, {"rl": {"step": step, "version": version, "init": os.path.abspath(args.init)}})
            model.to(args.device)
            server.push(os.path.abspath(new_dir), version)
            old = weights_dir
            weights_dir = new_dir
            if os.path.dirname(os.path.abspath(old)) == os.path.abspath(os.path.join(args.out, "weights")):
                shutil.rmtree(old, ignore_errors=True)
        t_push = time.time() - t2
        pass_at_g = float((drawn_rewards.max(1).values > 0).double().mean())
        signal = int((drawn_rewards.std(1) > 0).sum())
        h = {"step": step, "reward": float(drawn_rewards.mean()), "pass_at_group": pass_at_g, "groups_with_signal": signal,
             "groups_drawn": len(drawn), "groups_trained": len(progs), "trained_with_signal": int((rewards.std(1) > 0).sum()),
             "kl": stats.get("kl", 0.0), "ratio": stats.get("ratio", 1.0), "clipped": stats.get("clipped", 0.0),
             "max_logprob_diff": worst, "rollout_s": t_roll, "update_s": t_upd, "push_s": t_push, "version": version}
        history.append(h)
        print(f"update {step} | reward {h['reward']:.3f} | accuracy {h['reward']:.3f} (pass@{args.group} {pass_at_g:.3f}, "
              f"{signal}/{len(drawn)} groups with signal, {h['trained_with_signal']}/{len(progs)} trained) | KL {h['kl']:.2e} | ratio {h['ratio']:.3f} | "
              f"|server - torch| {worst:.1e} | rollout {t_roll:.1f}s update {t_upd:.1f}s push {t_push:.1f}s | {version}", flush=True)
        if args.eval_every and step % args.eval_every == 0:
            run_eval()
        checkpoint()
        plot_history(history, evals, os.path.join(args.out, "curve.png"))
    if not evals or evals[-1]["step"] != step:
        run_eval()
        checkpoint()
    plot_history(history, evals, os.path.join(args.out, "curve.png"))
    write_json(os.path.join(args.out, "history.json"), {"history": history, "evals": evals, "best": best})
    print(f"done: {step} updates; best validation latent T_z=0 {best['latent_greedy']:.3f} at update {best['step']} ({best['dir']})", flush=True)
    if best["step"] == 0:
        print(f"no update beat the starting model's validation latent accuracy while keeping "
              f"{', '.join(hold_modes) or 'nothing'} at or above the start: no best/ written", flush=True)


if __name__ == "__main__":
    main()
