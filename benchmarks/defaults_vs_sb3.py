"""Return reached at one budget: our CLI defaults next to Stable-Baselines3 (defaults and RL Zoo).

For each env and seed, three runs, each in a fresh subprocess with a timeout:

  ours      `python train.py --env ID --steps N --seed S --quiet --log-dir TMP --save-dir TMP/w`
            exactly as a user runs it (the env's preset / family defaults apply), then
            `python play.py --weights TMP/w --env ID --episodes 10` (10 deterministic episodes).
  sb3       `PPO("MlpPolicy", make_vec_env(ID, n_envs=1, seed=S), seed=S, device="cpu")` with
            SB3's default hyperparameters, `learn(N)`.
  zoo       SB3 PPO with RL Zoo's tuned hyperparameters for the env (ZOO_PPO below), but trained
            for the same N steps rather than the zoo's own n_timesteps.

SB3 runs are scored with `evaluate_policy(model, env, n_eval_episodes=10, deterministic=True)` on
a fresh env (VecNormalize statistics copied and frozen where the zoo normalises). SB3 trains in
whole rollouts, so it can run past N by up to one rollout (n_envs * n_steps); the steps actually
taken are recorded. No thread settings are made for either library: ours picks its torch threads
itself, SB3 runs with torch's default, unless --sb3-threads sets SB3's (to run two benchmarks
side by side on a small machine: torch's default threads beside another busy process slow SB3
down several-fold, which changes its wall times, not its returns).

    python benchmarks/defaults_vs_sb3.py                       # 5 envs, 100k steps, seeds 0 1
    python benchmarks/defaults_vs_sb3.py --envs CartPole-v1 --seeds 0 --steps 50000

Writes benchmarks/results/defaults_vs_sb3/results.json (after every run, so an interrupted
benchmark keeps its runs; --reuse skips runs already there and keeps the file's other runs),
results.md (--report rewrites it from results.json alone) and runs/ENV/VARIANT/seedS, one folder
per run in the run-folder format that ppo-compare reads (train_args.json with env, trainer and
seed; progress.csv with the final score as eval_return at the steps trained), so the tables'
statistics come from the user's command:

    python compare.py benchmarks/results/defaults_vs_sb3_1M/runs --group-by env,trainer

--references FILE writes, for ppo-tune's studies across envs (--reference FILE), each env's random
policy return (measured here, 10 episodes) and SB3's defaults' mean return from results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path

try:  # run as a script: benchmarks/ is on sys.path
    import harness
except ImportError:  # loaded by its path (tests/test_presets.py reads ZOO_PPO): the repository is
    from benchmarks import harness

ROOT = harness.REPO
OUT_DIR = ROOT / "benchmarks" / "results" / "defaults_vs_sb3"
ENVS = ["CartPole-v1", "Acrobot-v1", "MountainCar-v0", "Pendulum-v1", "LunarLander-v3"]
VARIANTS = ["ours", "sb3", "zoo"]
TRAINERS = {"ours": "ours (CLI defaults)", "sb3": "SB3 defaults", "zoo": "SB3 + RL Zoo settings"}
EVAL_EPISODES = 10

# RL Zoo's tuned PPO hyperparameters, copied from rl-baselines3-zoo hyperparams/ppo.yml
# (github.com/DLR-RM/rl-baselines3-zoo, commit 22e3ff2450fd92033f7f032915e1f64894a09584,
# 2026-04-23). Keys as in the yml: "normalize" wraps the env in VecNormalize with the algorithm's
# gamma (rl_zoo3/exp_manager.py _preprocess_normalization), "lin_X" is a linear schedule from X
# to 0 (SimpleLinearSchedule), "n_timesteps" is the zoo's own budget (reported, not used).
# The zoo's LunarLander-v3 entry is the same as its older LunarLander-v2 entry.
# The zoo's policy_kwargs for its tuned MuJoCo entries; "activation_fn" names a torch.nn class.
ZOO_MUJOCO_NET = dict(
    log_std_init=-2, ortho_init=False, activation_fn="ReLU", net_arch=dict(pi=[256, 256], vf=[256, 256])
)
ZOO_PPO = {
    "CartPole-v1": dict(
        n_timesteps=1e5,
        n_envs=8,
        n_steps=32,
        batch_size=256,
        gae_lambda=0.8,
        gamma=0.98,
        n_epochs=20,
        ent_coef=0.0,
        learning_rate="lin_0.001",
        clip_range="lin_0.2",
    ),
    "Acrobot-v1": dict(
        n_timesteps=1e6,
        normalize=True,
        n_envs=16,
        n_steps=256,
        gae_lambda=0.94,
        gamma=0.99,
        n_epochs=4,
        ent_coef=0.0,
    ),
    "MountainCar-v0": dict(
        n_timesteps=1e6,
        normalize=True,
        n_envs=16,
        n_steps=16,
        gae_lambda=0.98,
        gamma=0.99,
        n_epochs=4,
        ent_coef=0.0,
    ),
    "Pendulum-v1": dict(
        n_timesteps=1e5,
        n_envs=4,
        n_steps=1024,
        gae_lambda=0.95,
        gamma=0.9,
        n_epochs=10,
        ent_coef=0.0,
        learning_rate=1e-3,
        clip_range=0.2,
        use_sde=True,
        sde_sample_freq=4,
    ),
    "LunarLander-v3": dict(
        n_timesteps=1e6,
        n_envs=16,
        n_steps=1024,
        batch_size=64,
        gae_lambda=0.98,
        gamma=0.999,
        n_epochs=4,
        ent_coef=0.01,
    ),
    "BipedalWalker-v3": dict(
        n_timesteps=5e6,
        normalize=True,
        n_envs=32,
        n_steps=2048,
        batch_size=64,
        gae_lambda=0.95,
        gamma=0.999,
        n_epochs=10,
        ent_coef=0.0,
        learning_rate=3e-4,
        clip_range=0.18,
    ),
    # The zoo's MuJoCo entries are for the -v4 envs; the -v5 envs have the same dynamics and rewards.
    "HalfCheetah-v5": dict(
        n_timesteps=1e6,
        normalize=True,
        n_envs=1,
        batch_size=64,
        n_steps=512,
        gamma=0.98,
        learning_rate=2.0633e-05,
        ent_coef=0.000401762,
        clip_range=0.1,
        n_epochs=20,
        gae_lambda=0.92,
        max_grad_norm=0.8,
        vf_coef=0.58096,
        policy_kwargs=ZOO_MUJOCO_NET,
    ),
    "Hopper-v5": dict(
        n_timesteps=1e6,
        normalize=True,
        n_envs=1,
        batch_size=32,
        n_steps=512,
        gamma=0.999,
        learning_rate=9.80828e-05,
        ent_coef=0.00229519,
        clip_range=0.2,
        n_epochs=5,
        gae_lambda=0.99,
        max_grad_norm=0.7,
        vf_coef=0.835671,
        policy_kwargs=ZOO_MUJOCO_NET,
    ),
    "Walker2d-v5": dict(
        n_timesteps=1e6,
        normalize=True,
        n_envs=1,
        batch_size=32,
        n_steps=512,
        gamma=0.99,
        learning_rate=5.05041e-05,
        ent_coef=0.000585045,
        clip_range=0.1,
        n_epochs=20,
        gae_lambda=0.95,
        max_grad_norm=1,
        vf_coef=0.871923,
        policy_kwargs=ZOO_MUJOCO_NET,
    ),
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--envs", nargs="+", default=ENVS, help="Gymnasium env ids")
    parser.add_argument("--steps", type=int, default=100_000, help="env steps per run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--variants", nargs="+", default=VARIANTS, choices=VARIANTS)
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per subprocess")
    parser.add_argument(
        "--sb3-threads",
        type=int,
        default=None,
        help="torch threads for the SB3 runs (default: torch's own choice)",
    )
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    parser.add_argument(
        "--report", action="store_true", help="run nothing: rewrite OUT/results.md from OUT/results.json"
    )
    parser.add_argument(
        "--references",
        type=Path,
        default=None,
        help="run nothing: write ppo-tune's reference file (random and SB3-defaults returns) here",
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="keep runs already in results.json with the same env/variant/seed/steps",
    )
    return parser.parse_args(argv)


# ---------------------------------------------------------------- SB3 runs (in a fresh process)


def _linear(initial: float):
    """RL Zoo's SimpleLinearSchedule: initial * progress_remaining (1 -> 0)."""
    return lambda progress_remaining: progress_remaining * initial


def with_zoo_schedules(hp: dict) -> dict:
    """`hp` with RL Zoo's "lin_X" learning rate and clip range as SB3 schedules."""
    return {
        key: _linear(float(value.split("_")[1]))
        if key in ("learning_rate", "clip_range") and isinstance(value, str)
        else value
        for key, value in hp.items()
    }


def zoo_settings(env_id: str) -> tuple[dict, int, bool]:
    """SB3 PPO keywords, n_envs and whether to VecNormalize, from ZOO_PPO."""
    hp = with_zoo_schedules(ZOO_PPO[env_id])
    hp.pop("n_timesteps")
    n_envs = hp.pop("n_envs", 1)
    normalize = hp.pop("normalize", False)
    if "policy_kwargs" in hp:
        import torch.nn

        net = dict(hp["policy_kwargs"])
        net["activation_fn"] = getattr(torch.nn, net["activation_fn"])
        hp["policy_kwargs"] = net
    return hp, n_envs, normalize


def run_sb3(variant: str, env_id: str, seed: int, steps: int, threads: int | None) -> dict:
    """Train SB3 PPO (defaults or zoo settings) and score it; returns the run's record."""
    t0 = time.perf_counter()
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.vec_env import VecNormalize, sync_envs_normalization

    kwargs, n_envs, normalize = zoo_settings(env_id) if variant == "zoo" else ({}, 1, False)
    env = make_vec_env(env_id, n_envs=n_envs, seed=seed)
    if normalize:
        env = VecNormalize(env, gamma=kwargs.get("gamma", 0.99))
    model = PPO("MlpPolicy", env, seed=seed, device="cpu", verbose=0, **kwargs)
    model.learn(steps)
    train_s = time.perf_counter() - t0

    eval_env = make_vec_env(env_id, n_envs=1, seed=0)
    if normalize:
        eval_env = VecNormalize(eval_env, training=False, norm_reward=False)
        sync_envs_normalization(env, eval_env)
    returns, _ = evaluate_policy(
        model, eval_env, n_eval_episodes=EVAL_EPISODES, deterministic=True, return_episode_rewards=True
    )
    return {
        "mean_return": float(sum(returns) / len(returns)),
        "episode_returns": list(map(float, returns)),
        "train_s": train_s,
        "steps_trained": int(model.num_timesteps),
    }


# ---------------------------------------------------------------- orchestration


def run_ours(env_id: str, seed: int, steps: int, timeout: float) -> dict:
    """train.py then play.py, as a user runs them."""
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        harness.run_python(
            [
                "train.py",
                "--env",
                env_id,
                "--steps",
                str(steps),
                "--seed",
                str(seed),
                "--quiet",
                "--log-dir",
                tmp,
                "--save-dir",
                f"{tmp}/w",
            ],
            timeout=timeout,
        )
        train_s = time.perf_counter() - t0
        args = json.loads(next(Path(tmp).glob("*/train_args.json")).read_text())
        play = harness.run_python(
            ["play.py", "--weights", f"{tmp}/w", "--env", env_id, "--episodes", str(EVAL_EPISODES)],
            timeout=timeout,
        )
    lines = play.strip().splitlines()
    returns = [float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith("episode ")]
    return {
        "mean_return": float(lines[-1].split()[-1]),
        "episode_returns": returns,
        "train_s": train_s,
        "train_args": args,
    }


def run_one(
    variant: str, env_id: str, seed: int, steps: int, timeout: float, sb3_threads: int | None
) -> dict:
    """One run in fresh subprocesses; a failure or timeout is recorded, not raised."""
    if variant == "ours":
        return harness.or_error(run_ours, env_id, seed, steps, timeout)
    return harness.or_error(
        harness.call_fresh,
        "defaults_vs_sb3:run_sb3",
        dict(variant=variant, env_id=env_id, seed=seed, steps=steps, threads=sb3_threads),
        timeout=timeout,
    )


def machine() -> dict:
    versions = harness.package_versions("torch", "stable_baselines3")
    return {
        "platform": platform.platform(),
        "processor": harness.cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "torch": versions["torch"],
        "sb3": versions["stable_baselines3"],
    }


def cell(runs: list[dict]) -> str:
    """'mean ± std over seeds (n seeds, wall s)' for one env/variant."""
    ok = [r for r in runs if "mean_return" in r]
    if not ok:
        return "failed" if runs else "—"
    means = [r["mean_return"] for r in ok]
    std = statistics.pstdev(means) if len(means) > 1 else 0.0
    wall = statistics.mean(r["train_s"] for r in ok)
    note = f", {len(runs) - len(ok)} failed" if len(ok) < len(runs) else ""
    seeds = f"{len(ok)} seed{'s' if len(ok) > 1 else ''}"
    return f"{statistics.mean(means):.1f} ± {std:.1f} ({seeds}, {wall:.0f} s{note})"


def sb3_threads(runs: list[dict]) -> str:
    """How many torch threads the SB3 runs had, in words."""
    counts = Counter(r.get("sb3_threads") for r in runs if r["variant"] != "ours")
    if len(counts) <= 1:
        threads = next(iter(counts), None)
        return "torch's default threads" if threads is None else f"{threads} torch thread(s) (--sb3-threads)"
    return (
        ", ".join(
            f"{'torch default' if n is None else n} thread(s) in {k} runs"
            for n, k in sorted(counts.items(), key=str)
        )
        + " (--sb3-threads; results.json)"
    )


def write_markdown(results: dict, path: Path) -> None:
    m, cfg = results["machine"], results["config"]
    lines = [
        f"# Return at {cfg['steps']:,} env steps: ours (CLI defaults) vs Stable-Baselines3",
        "",
        f"Deterministic mean return over {EVAL_EPISODES} episodes, then mean ± std (population) over "
        f"the seeds run (of {cfg['seeds']}); in brackets how many seeds and the mean training wall time "
        "(indicative only: 2-core "
        "machine, other benchmark runs and jobs beside it).",
        "",
        "| env | ours (CLI defaults) | SB3 defaults | SB3 + RL Zoo settings | zoo's own budget |",
        "|---|---|---|---|---|",
    ]
    for env_id in cfg["envs"]:
        cells = [
            cell([r for r in results["runs"] if r["env"] == env_id and r["variant"] == v]) for v in VARIANTS
        ]
        budget = f"{ZOO_PPO[env_id]['n_timesteps']:,.0f}" if env_id in ZOO_PPO else "—"
        lines.append(f"| {env_id} | " + " | ".join(cells) + f" | {budget} |")
    lines += [
        "",
        f"Machine: {m['processor']}, {m['cores']} cores ({m['platform']}); Python {m['python']}, "
        f"torch {m['torch']}, stable-baselines3 {m['sb3']}.",
        "",
        "- ours: `python train.py --env ID --steps N --seed S --quiet --log-dir TMP --save-dir TMP/w`, "
        "scored with `python play.py --weights TMP/w --env ID --episodes 10` (episode k seeded 0+k). "
        "Ours chooses its torch threads itself; the wall time includes its periodic evaluations.",
        "- SB3 defaults: `PPO('MlpPolicy', make_vec_env(ID, n_envs=1, seed=S), seed=S, device='cpu')`, "
        f"`learn(N)`; SB3 (both columns) runs with {sb3_threads(results['runs'])}.",
        "- SB3 + RL Zoo: hyperparameters of rl-baselines3-zoo hyperparams/ppo.yml (ZOO_PPO in the "
        "script, VecNormalize where the zoo normalises) but trained for the same N steps; the last "
        "column is the zoo's own n_timesteps.",
        "- SB3 runs are scored with `evaluate_policy(..., n_eval_episodes=10, deterministic=True)` "
        "on a "
        "fresh env seeded 0 (normalisation statistics frozen). SB3 stops at the first whole rollout "
        "past N, so it may train up to one rollout more (steps_trained in results.json).",
        "",
        "Reproduce: `python benchmarks/defaults_vs_sb3.py "
        f"--envs {' '.join(cfg['envs'])} --steps {cfg['steps']} "
        f"--seeds {' '.join(map(str, cfg['seeds']))}`",
    ]
    path.write_text("\n".join(lines) + "\n")


def write_run_folders(results: dict, folder: Path) -> None:
    """Each finished run as a folder ppo-compare reads: FOLDER/ENV/VARIANT/seedS with
    train_args.json (env, trainer, seed, budget, and ours' resolved settings) and progress.csv
    (one row: the steps trained and the run's score as eval_return). A folder of this format
    whose run is no longer in `results` (a failed rerun, a run taken out) is removed, so that
    ppo-compare reads the file's runs and no others."""
    written = set()
    for run in results["runs"]:
        if "mean_return" not in run:
            continue
        run_dir = folder / run["env"].replace(":", "-") / run["variant"] / f"seed{run['seed']}"
        written.add(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        settings = {
            **run.get("train_args", {}),
            "env": run["env"],
            "trainer": TRAINERS[run["variant"]],
            "seed": run["seed"],
            "steps": run["steps"],
        }
        (run_dir / "train_args.json").write_text(json.dumps(settings, indent=1) + "\n")
        trained = run.get("steps_trained", run["steps"])
        (run_dir / "progress.csv").write_text(f"steps,eval_return\n{trained},{run['mean_return']}\n")
    for stale in set(folder.glob("*/*/seed*")) - written:
        if {path.name for path in stale.iterdir()} == {"train_args.json", "progress.csv"}:
            shutil.rmtree(stale)


def random_return(env_id: str, episodes: int = EVAL_EPISODES) -> float:
    """The mean return of uniformly random actions over `episodes` episodes (episode k and the
    action space seeded k)."""
    import gymnasium as gym

    env, total = gym.make(env_id), 0.0
    for episode in range(episodes):
        env.reset(seed=episode)
        env.action_space.seed(episode)
        done = False
        while not done:
            _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            total += float(reward)
            done = terminated or truncated
    env.close()
    return total / episodes


def write_references(results: dict, path: Path) -> None:
    """ppo-tune's reference file: for each env with SB3-defaults runs in `results`, the random
    policy's return and the mean of those runs' returns at the benchmark's budget."""
    table = {}
    for env_id in results["config"]["envs"]:
        sb3 = [r for r in results["runs"] if r["env"] == env_id and r["variant"] == "sb3"]
        returns = [r["mean_return"] for r in sb3 if "mean_return" in r]
        if returns:
            table[env_id] = {
                "random": round(random_return(env_id), 2),
                "reference": round(statistics.mean(returns), 2),
                "source": f"random: {EVAL_EPISODES} episodes of random actions; reference: SB3 defaults, "
                f"{results['config']['steps']:,} steps, mean of {len(returns)} seeds (defaults_vs_sb3.py)",
            }
    harness.save_json(path, table)


def main(argv=None) -> None:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    json_path = args.out / "results.json"
    if args.references is not None:
        write_references(harness.load_json(json_path), args.references)
        print(args.references.read_text())
        return
    if args.report:
        write_markdown(harness.load_json(json_path), args.out / "results.md")
        write_run_folders(harness.load_json(json_path), args.out / "runs")
        print((args.out / "results.md").read_text())
        return
    old = harness.load_json(json_path, {"runs": []})["runs"] if args.reuse else []
    planned = [
        dict(env=env_id, variant=variant, seed=seed, steps=args.steps)
        for env_id in args.envs
        for seed in args.seeds
        for variant in args.variants
    ]
    # with --reuse, runs outside this selection stay in the file
    others = harness.runs_outside(old, planned)
    results = {
        "machine": machine(),
        "zoo_ppo": ZOO_PPO,
        "runs": others,
        "config": {
            "envs": list(dict.fromkeys([r["env"] for r in others] + args.envs)),
            "steps": args.steps,
            "seeds": sorted({r["seed"] for r in others} | set(args.seeds)),
        },
    }
    for key in planned:
        done = harness.finished_run(old, key)
        record = done or {
            **key,
            **run_one(key["variant"], key["env"], key["seed"], args.steps, args.timeout, args.sb3_threads),
        }
        if key["variant"] != "ours" and not done:
            record["sb3_threads"] = args.sb3_threads
        results["runs"].append(record)
        print(
            f"{key['env']:15s} seed {key['seed']} {key['variant']:4s}: "
            f"{record.get('mean_return', record.get('error'))} ({record.get('train_s', 0):.0f} s)",
            flush=True,
        )
        harness.save_json(json_path, results)
    write_markdown(results, args.out / "results.md")
    write_run_folders(results, args.out / "runs")
    print((args.out / "results.md").read_text())


if __name__ == "__main__":
    main()
