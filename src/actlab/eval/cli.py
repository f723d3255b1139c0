"""`actlab-eval checkpoint=<folder> [overrides]` / `python eval.py ...`: evaluate a trained policy.

The checkpoint brings the policy and its training run's settings, which the command line overrides
(actlab.config.checkpoint). A folder without a training run (a LeRobot pretrained folder, a bare policy
folder) brings only its architecture; the env or dataset then come from the command line.

- Simulator mode: `env.final_eval_episodes` episodes from seeds `env.seed + i`, in `eval.num_workers`
  processes; success rate, average reward and length with 95 % confidence intervals; `eval/episodes.jsonl`,
  `eval/sim_metrics.json`, `eval/videos/episode_<i>.mp4` for the first `eval.videos` episodes.
- Dataset mode: replay of the run's held-out episodes (or `eval.episodes`); MAE and RMSE per action
  dimension and overall in `eval/dataset_metrics.json`, `eval/plots/episode_<i>.png`, and with
  `eval.video=true` `eval/videos/episode_<i>.mp4`.

Everything is written under a new Hydra run directory, never into the checkpoint.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from actlab.config.entry_points import checkpoint_command
from actlab.config.ranges import check_ranges
from actlab.errors import ActlabError
from actlab.export.acting import load_acting_policy

log = logging.getLogger("actlab")

MODES = ("auto", "sim", "dataset")


# ----------------------------------------------------------------------------------------- evaluation
def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Loads the checkpoint's policy and evaluates it in the simulator or on dataset episodes."""
    options = cfg.eval
    if options.mode not in MODES:
        raise ActlabError(f"eval.mode={options.mode!r} is not one of {list(MODES)}")
    check_ranges(cfg)  # as the command does at start; again for a config composed elsewhere (a notebook)
    policy = load_acting_policy(cfg, options.device)
    folder, device = Path(cfg.checkpoint), next(policy.parameters()).device
    mode = options.mode if options.mode != "auto" else ("sim" if cfg.env.type != "none" else "dataset")
    out_dir = Path(cfg.paths.output_dir) / "eval"
    runtime = "policy.runtime=onnx" if policy.chunk_backend is not None else f"policy.precision={cfg.policy.precision}"
    log.info(f"Evaluating {folder} ({mode} mode, {device}, {runtime})")
    if mode == "sim":
        return evaluate_in_simulator(cfg, policy, out_dir)
    return evaluate_on_dataset(cfg, policy, out_dir)


def evaluate_in_simulator(cfg: DictConfig, policy, out_dir: Path) -> dict[str, Any]:
    from actlab.sim.runner import SimRunner

    env_cfg, options = cfg.env, cfg.eval
    episodes = env_cfg.final_eval_episodes
    if episodes < 1:
        raise ActlabError(f"env.final_eval_episodes={episodes}: the simulator evaluation needs 1 or more episodes")
    videos = min(options.videos, episodes)
    started = time.perf_counter()
    runner = SimRunner(env_cfg, episodes, env_cfg.max_steps, env_cfg.seed, options.num_workers, videos)
    try:
        summary = runner.run(policy, out_dir / "videos", progress=True)
    finally:
        runner.close()
    results = runner.results
    seconds = time.perf_counter() - started
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / "episodes.jsonl", "w") as f:
        for result in results:
            f.write(json.dumps(asdict(result)) + "\n")
    metrics = {
        **summary,
        "checkpoint": str(cfg.checkpoint),
        "task": env_cfg.task,
        "seed": env_cfg.seed,
        "max_steps": env_cfg.max_steps,
        "num_workers": options.num_workers,
        "seconds": seconds,
        "episodes_per_second": episodes / seconds,
    }
    (out_dir / "sim_metrics.json").write_text(json.dumps(metrics, indent=2))
    print_table(
        f"{env_cfg.task}: {episodes} episodes from seed {env_cfg.seed}, {options.num_workers} worker(s)",
        ["", "value", "95 % CI"],
        [
            [
                "success rate",
                f"{100 * summary['success_rate']:.1f} %",
                f"{100 * summary['success_rate_ci95_low']:.1f}-{100 * summary['success_rate_ci95_high']:.1f} %",
            ],
            ["avg reward", f"{summary['avg_reward']:.3f}", f"+- {summary['avg_reward_ci95']:.3f}"],
            ["avg length", f"{summary['avg_length']:.1f}", f"+- {summary['avg_length_ci95']:.1f}"],
            ["throughput", f"{episodes / seconds:.2f} episodes/s", ""],
        ],
    )
    log.info(f"Per-episode results: {out_dir / 'episodes.jsonl'}; videos: {videos} in {out_dir / 'videos'}")
    return metrics


def evaluate_on_dataset(cfg: DictConfig, policy, out_dir: Path) -> dict[str, Any]:
    from actlab.data.datamodule import split_episodes
    from actlab.data.formats import load_store
    from actlab.eval.replay import replay_episodes
    from actlab.sim.collect import dataset_config

    if cfg.dataset.name == "none":
        raise ActlabError(
            f"checkpoint={cfg.checkpoint} has no training run settings to take the dataset from; pass one, e.g. "
            "dataset=lerobot dataset.root=/path/to/dataset"
        )
    data = dataset_config(cfg)
    store = load_store(data, Path(cfg.paths.cache_dir))
    if cfg.eval.episodes is not None:
        episodes, which = [int(e) for e in cfg.eval.episodes], "chosen"
    else:
        episodes, which = split_episodes(store.num_episodes, data.val_split, cfg.seed)[1].tolist(), "held-out"
        if not episodes:
            episodes, which = list(range(store.num_episodes)), "all (no held-out episodes: dataset.val_split=0)"
    metrics = replay_episodes(policy, store, episodes, out_dir, plots=cfg.eval.plots, video=cfg.eval.video)
    metrics = {"checkpoint": str(cfg.checkpoint), "dataset": str(store.root or store.name), **metrics}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "dataset_metrics.json").write_text(json.dumps(metrics, indent=2))
    rows = [[name, f"{m['mae']:.4g}", f"{m['rmse']:.4g}"] for name, m in metrics["per_dimension"].items()]
    rows.append(["overall", f"{metrics['mae']:.4g}", f"{metrics['rmse']:.4g}"])
    c = policy.config
    replanning = (
        f"temporal ensembling {c.temporal_ensemble_coeff}"
        if c.temporal_ensemble_coeff is not None
        else f"n_action_steps={c.n_action_steps}"
    )
    print_table(
        f"{store.name}: {len(episodes)} {which} episodes, {metrics['frames']} frames, {replanning}",
        ["action", "MAE", "RMSE"],
        rows,
    )
    log.info(f"Metrics: {out_dir / 'dataset_metrics.json'}; plots: {out_dir / 'plots'}")
    return metrics


def print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    log.info(title)
    for row in [header, ["-" * w for w in widths], *rows]:
        log.info("  " + "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


main = checkpoint_command("eval", evaluate)


if __name__ == "__main__":
    main()
