"""GRPO's objective on one batch of groups (DeepSeekMath's GRPO, as NF-CoT's RL stage uses it).

For trajectory i of a group of n sampled for one prompt, with reward r_i:
  advantage   A_i = (r_i - mean(r)) / (std(r) + eps)       (population std over the group)
  log ratio   l_i = clip(log pi_new(tau_i) - log pi_old(tau_i), -20, 20)   (the paper's latent ratio)
  policy term p_i = -min(exp(l_i) A_i, clip(exp(l_i), 1 - eps_clip, 1 + eps_clip) A_i)
  KL term     k_i = sum over the trajectory's positions (thoughts and answer tokens) of
                    exp(d) - d - 1 with d = clip(log pi_ref - log pi_new, -20, 20)  (the k3 estimator)
  loss        mean_i p_i + kl_coef * mean_i k_i
log pi(tau) is the sequence log-prob: the thoughts' density at the sampling temperature T_z plus
the answer tokens' log-probs.
"""
from __future__ import annotations

import torch

LOG_RATIO_CLIP = 20.0


def group_advantages(rewards: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """rewards [G, n] -> advantages [G, n]; a group whose rewards are all equal gets zeros."""
    mean = rewards.mean(1, keepdim=True)
    std = rewards.std(1, unbiased=False, keepdim=True)
    return (rewards - mean) / (std + eps)


def k3(log_ref: torch.Tensor, log_new: torch.Tensor) -> torch.Tensor:
    """Per position: exp(d) - d - 1, d = log_ref - log_new (>= 0, unbiased for KL(new || ref))."""
    d = (log_ref - log_new).clamp(-LOG_RATIO_CLIP, LOG_RATIO_CLIP)
    return torch.exp(d) - d - 1.0


def grpo_loss(logp_new: torch.Tensor, logp_old: torch.Tensor, adv: torch.Tensor, clip_eps: float = 0.2,
              kl: torch.Tensor | None = None, kl_coef: float = 0.0) -> tuple[torch.Tensor, dict]:
    """logp_new, logp_old, adv, kl: [N] per trajectory (kl: summed k3 over its positions).
    Returns (loss, stats: ratio mean, clipped share, policy loss, kl mean)."""
    log_ratio = (logp_new - logp_old).clamp(-LOG_RATIO_CLIP, LOG_RATIO_CLIP)
    ratio = torch.exp(log_ratio)
    unclipped = ratio * adv
    clipped = ratio.clamp(1.0 - clip_eps, 1.0 + clip_eps) * adv
    policy = -torch.min(unclipped, clipped)
    loss = policy.mean()
    kl_mean = torch.zeros((), dtype=loss.dtype) if kl is None else kl.mean()
    if kl is not None and kl_coef > 0:
        loss = loss + kl_coef * kl_mean
    stats = {"ratio": float(ratio.mean()), "clipped": float(((ratio - 1).abs() > clip_eps).double().mean()),
             "policy_loss": float(policy.mean()), "kl": float(kl_mean)}
    return loss, stats


def select_groups(rewards: torch.Tensor, keep: int) -> list[int]:
    """Dynamic sampling (DAPO): of G drawn groups [G, n], the indices of the first `keep` whose
    rewards differ (the only ones with a policy gradient), then, if fewer differ, the first
    all-equal groups to fill the batch. Order of drawing is kept, so a seed picks the same batch."""
    differs = (rewards.max(1).values != rewards.min(1).values).tolist()
    signal = [g for g, d in enumerate(differs) if d]
    rest = [g for g, d in enumerate(differs) if not d]
    return (signal + rest)[:keep]
