"""The RL curve: reward and validation accuracy per update, as a PNG (matplotlib, Agg backend)."""
from __future__ import annotations


def plot_history(history: list[dict], evals: list[dict], path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    steps = [h["step"] for h in history]
    ax1.plot(steps, [h["reward"] for h in history], ".", alpha=0.35, label="batch reward (T_z sampled)")
    if len(history) >= 5:
        w = 10
        smooth = [sum(h["reward"] for h in history[max(0, i - w + 1):i + 1]) / len(history[max(0, i - w + 1):i + 1])
                  for i in range(len(history))]
        ax1.plot(steps, smooth, "-", label=f"mean of last {w}")
    ax1.set_xlabel("update")
    ax1.set_ylabel("reward = accuracy of rollouts")
    ax1.set_title("rollout reward")
    ax1.legend(loc="lower right")
    for key, label in (("latent_greedy", "latent, T_z = 0"), ("latent_sampled", "latent pass@1, T_z sampled"),
                       ("explicit", "explicit"), ("none", "none")):
        pts = [(e["step"], e[key]) for e in evals if key in e]
        if pts:
            ax2.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=label)
    ax2.set_xlabel("update")
    ax2.set_ylabel("validation accuracy")
    ax2.set_title("validation split")
    ax2.legend(loc="center right", fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
