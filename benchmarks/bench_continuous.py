"""bench.py's continuous-action section at a fixed budget: HalfCheetah-v5 (ours with
normalize_obs=True, 16 envs; SB3 with RL Zoo's tuned settings) where MuJoCo can build it, else
Pendulum-v1 (ours with gamma 0.9; SB3 with RL Zoo's settings).

    python benchmarks/bench_continuous.py [--quick] ... # = python benchmarks/bench.py --only continuous
"""

from __future__ import annotations

import time

from bench_trainers import COLORS, ok, sb3_last_mean, sb3_recorder, sb3_result, status
from harness import difference, fmt, median, ratio, table

PENDULUM_WINDOW = 20
HALFCHEETAH = "HalfCheetah-v5"
HALFCHEETAH_WINDOW = 10  # mean return of the last 10 finished episodes (1000 steps each)
HALFCHEETAH_OUR_ENVS = 16
# RL Zoo's tuned HalfCheetah settings (rl-baselines3-zoo hyperparams/ppo.yml, HalfCheetah-v4;
# `normalize: true` = VecNormalize of observations and rewards, with the algorithm's gamma).
# No schedules, so a budget below the Zoo's 1e6 steps changes nothing but the length.
ZOO_HALFCHEETAH = dict(
    n_envs=1,
    n_steps=512,
    batch_size=64,
    gamma=0.98,
    learning_rate=2.0633e-05,
    ent_coef=0.000401762,
    clip_range=0.1,
    n_epochs=20,
    gae_lambda=0.92,
    max_grad_norm=0.8,
    vf_coef=0.58096,
)
ZOO_HALFCHEETAH_POLICY = dict(
    log_std_init=-2,
    ortho_init=False,
    activation_fn="ReLU",  # torch.nn.ReLU
    net_arch=dict(pi=[256, 256], vf=[256, 256]),
)


# ---------------------------------------------------------------- measurements (fresh processes)


def train_sb3_pendulum(seed: int, steps: int) -> dict:
    """SB3 PPO with RL Zoo's Pendulum-v1 settings (use_sde off), VecNormalize obs + reward."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    start = time.perf_counter()
    env = VecNormalize(
        make_vec_env("Pendulum-v1", n_envs=4, seed=seed), norm_obs=True, norm_reward=True, gamma=0.9
    )
    model = PPO(
        "MlpPolicy",
        env,
        n_steps=1024,
        gae_lambda=0.95,
        gamma=0.9,
        n_epochs=10,
        ent_coef=0.0,
        learning_rate=1e-3,
        clip_range=0.2,
        use_sde=False,
        device="cpu",
        seed=seed,
        verbose=0,
    )
    recorder = sb3_recorder(start, PENDULUM_WINDOW, None)
    model.learn(total_timesteps=steps, callback=recorder)
    return dict(sb3_result(model, recorder, start, steps), last_mean=sb3_last_mean(model, PENDULUM_WINDOW))


def train_sb3_halfcheetah(seed: int, steps: int) -> dict:
    """SB3 PPO with RL Zoo's tuned HalfCheetah settings (ZOO_HALFCHEETAH), VecNormalize obs +
    reward (gamma 0.98, as the Zoo passes the algorithm's gamma to it)."""
    import torch.nn as nn
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    settings = dict(ZOO_HALFCHEETAH)
    start = time.perf_counter()
    env = VecNormalize(
        make_vec_env(HALFCHEETAH, n_envs=settings.pop("n_envs"), seed=seed),
        norm_obs=True,
        norm_reward=True,
        gamma=settings["gamma"],
    )
    policy_kwargs = dict(
        ZOO_HALFCHEETAH_POLICY, activation_fn=getattr(nn, ZOO_HALFCHEETAH_POLICY["activation_fn"])
    )
    model = PPO("MlpPolicy", env, policy_kwargs=policy_kwargs, device="cpu", seed=seed, verbose=0, **settings)
    recorder = sb3_recorder(start, HALFCHEETAH_WINDOW, None)
    model.learn(total_timesteps=steps, callback=recorder)
    return dict(
        sb3_result(model, recorder, start, steps),
        last_mean=sb3_last_mean(model, HALFCHEETAH_WINDOW),
        num_envs=ZOO_HALFCHEETAH["n_envs"],
    )


def probe_env(env_id: str) -> dict:
    """Whether `env_id` can be built and stepped here (HalfCheetah needs mujoco and imageio)."""
    try:
        import gymnasium as gym

        env = gym.make(env_id)
        env.reset(seed=0)
        env.step(env.action_space.sample())
        env.close()
    except Exception as error:  # ImportError, gymnasium's DependencyNotInstalled, ...
        return dict(na=f"{type(error).__name__}: {error}")
    from harness import package_versions

    version = package_versions("mujoco")["mujoco"]
    return dict(ok=True, mujoco=None if version == "not installed" else version)


# ---------------------------------------------------------------- the section


def env_choice(runs, wanted: str) -> dict:
    """HalfCheetah-v5 where it can be built (mujoco and imageio importable), else Pendulum-v1;
    `wanted` ('auto', 'halfcheetah', 'pendulum') forces one."""
    if wanted == "pendulum":
        return dict(env="Pendulum-v1", reason="chosen with --continuous-env pendulum")
    probe = runs(f"probe {HALFCHEETAH}", "bench_continuous:probe_env", 1, env_id=HALFCHEETAH)
    if ok(probe):
        return dict(env=HALFCHEETAH, reason=f"mujoco {probe.get('mujoco')} importable")
    if wanted == "halfcheetah":
        return dict(env=HALFCHEETAH, reason=f"forced, but the probe failed: {status(probe)}")
    return dict(env="Pendulum-v1", reason=f"fallback: {HALFCHEETAH} unavailable ({status(probe)})")


def run(
    runs, budget: dict, threads: dict, seeds: list[int], seeds_override: int | None, choice: dict
) -> dict:
    """results' continuous entry: the env chosen, its settings and each implementation's runs."""
    ours, sb3 = threads["ours"]["threads"], threads["sb3"]["threads"]
    by_impl = {"ours": [], "sb3": []}
    if choice["env"] != HALFCHEETAH:
        steps = budget["pendulum_steps"]
        for seed in seeds:
            by_impl["ours"].append(
                runs(
                    f"Pendulum ours seed {seed}",
                    "bench_trainers:train_ours",
                    ours,
                    env_id="Pendulum-v1",
                    seed=seed,
                    steps=steps,
                    window=PENDULUM_WINDOW,
                    ppo_options=dict(gamma=0.9),
                )
            )
            by_impl["sb3"].append(
                runs(
                    f"Pendulum SB3 seed {seed}",
                    "bench_continuous:train_sb3_pendulum",
                    sb3,
                    seed=seed,
                    steps=steps,
                )
            )
        return dict(
            choice, seeds=seeds, steps=steps, window=PENDULUM_WINDOW, our_envs=32, sb3_envs=4, runs=by_impl
        )
    steps = budget["halfcheetah_steps"]
    seeds = list(range(seeds_override if seeds_override is not None else budget["halfcheetah_seeds"]))
    our_ppo_options = dict(normalize_obs=True)
    for seed in seeds:
        by_impl["ours"].append(
            runs(
                f"HalfCheetah ours seed {seed}",
                "bench_trainers:train_ours",
                ours,
                env_id=HALFCHEETAH,
                seed=seed,
                steps=steps,
                window=HALFCHEETAH_WINDOW,
                ppo_options=our_ppo_options,
                num_envs=HALFCHEETAH_OUR_ENVS,
            )
        )
        by_impl["sb3"].append(
            runs(
                f"HalfCheetah SB3 seed {seed}",
                "bench_continuous:train_sb3_halfcheetah",
                sb3,
                seed=seed,
                steps=steps,
            )
        )
    return dict(
        choice,
        seeds=seeds,
        steps=steps,
        window=HALFCHEETAH_WINDOW,
        our_envs=HALFCHEETAH_OUR_ENVS,
        sb3_envs=ZOO_HALFCHEETAH["n_envs"],
        our_ppo_options=our_ppo_options,
        sb3_settings=ZOO_HALFCHEETAH,
        sb3_policy_kwargs=ZOO_HALFCHEETAH_POLICY,
        runs=by_impl,
    )


def summarize(runs: list[dict]) -> dict:
    """Median return at the budget, per-seed returns, median time, steps and speed."""
    good = [r for r in runs if ok(r)]
    if not good:
        return dict(status=status(runs[0]) if runs else "no runs")
    return dict(
        runs=len(good),
        median_return=median(r["last_mean"] for r in good),
        returns=[round(r["last_mean"], 1) for r in good],
        median_time=median(r["time"] for r in good),
        median_steps=median(r["steps"] for r in good),
        steps_per_s=median(r["steps_per_s"] for r in good),
    )


def ratios(cont: dict) -> list[tuple[str, float | None, str]]:
    ours, sb3 = cont["summary"]["ours"], cont["summary"]["sb3"]
    env = cont["env"]
    return [
        (
            f"{env} return at {cont['steps']:,} steps, ours - SB3",
            difference(ours.get("median_return"), sb3.get("median_return")),
            f"difference of the medians (mean of the last {cont['window']} episodes); > 0: ours higher",
        ),
        (
            f"{env} wall-clock, ours / SB3",
            ratio(ours.get("median_time"), sb3.get("median_time")),
            "< 1: ours trains the same budget sooner (medians)",
        ),
        (
            f"{env} whole-loop steps/s, ours / SB3",
            ratio(ours.get("steps_per_s"), sb3.get("steps_per_s")),
            "> 1: ours faster (medians)",
        ),
    ]


def labels(cont: dict) -> tuple[tuple[str, str], ...]:
    """(implementation, its row's label)."""
    ours_run = next((r for r in cont["runs"]["ours"] if ok(r)), {})
    ours_how = f"backend {ours_run.get('backend', '?')}, rollout {ours_run.get('rollout', '?')}"
    if cont["env"] == HALFCHEETAH:
        return (
            (
                "ours",
                f"ours: ppo_for_env(normalize_obs=True) + AsyncPPO defaults, "
                f"{cont['our_envs']} envs ({ours_how})",
            ),
            (
                "sb3",
                f"SB3 PPO, RL Zoo HalfCheetah settings ({cont['sb3_envs']} env, VecNormalize obs + reward)",
            ),
        )
    return (
        ("ours", f"ours: ppo_for_env(gamma=0.9) + AsyncPPO defaults, {cont['our_envs']} envs"),
        ("sb3", f"SB3 PPO, RL Zoo settings ({cont['sb3_envs']} envs, VecNormalize, no gSDE)"),
    )


def markdown(cont: dict) -> list[str]:
    rows = []
    for impl, label in labels(cont):
        s = cont["summary"][impl]
        if "status" in s:
            rows.append([label, s["status"], "", "", "", ""])
            continue
        rows.append(
            [
                label,
                fmt(s["median_return"], 1),
                ", ".join(fmt(r, 1) for r in s["returns"]),
                fmt(s["median_steps"]),
                fmt(s["median_time"], 1, " s"),
                fmt(s["steps_per_s"]),
            ]
        )
    seeds = len(cont["seeds"])
    return [
        "",
        f"## {cont['env']} at {cont['steps']:,} steps (mean return of the last {cont['window']} "
        f"episodes; median of {seeds} seed{'s' if seeds != 1 else ''}; random policy ~ "
        f"{'-1200' if cont['env'] == 'Pendulum-v1' else '-300'})",
        "",
    ] + table(
        ["implementation", "median return", "per-seed returns", "steps run", "median wall-clock", "steps/s"],
        rows,
    )


def notes(cont: dict) -> list[str]:
    env = cont["env"]
    if env != HALFCHEETAH:
        return [f"- Continuous section: {env} ({cont['reason']})."]
    zoo = ", ".join(f"{k}={v}" for k, v in cont["sb3_settings"].items())
    policy, envs = cont["sb3_policy_kwargs"], cont["our_envs"]
    return [
        f"- Continuous section: {env} ({cont['reason']}).",
        f"- {env}, ours: `ppo_for_env(env, seed=s, device='cpu', normalize_obs=True)` and "
        f"`AsyncPPO(env, ppo, num_envs={envs}, steps={cont['steps']:,})`, every other option "
        "at its default (gamma 0.99, lr 3e-3, 4 epochs of 512 over 2048-step batches, 64x64 tanh, "
        "no reward normalisation); AsyncPPO finishes the round that reaches the budget.",
        f"- {env}, SB3: RL Zoo's tuned HalfCheetah entry (rl-baselines3-zoo hyperparams/ppo.yml, "
        f"HalfCheetah-v4): {zoo}; policy_kwargs log_std_init={policy['log_std_init']}, "
        f"ortho_init={policy['ortho_init']}, activation_fn=nn.{policy['activation_fn']}, "
        f"net_arch={policy['net_arch']}; `normalize: true` = VecNormalize(norm_obs=True, "
        f"norm_reward=True, gamma={cont['sb3_settings']['gamma']}); device='cpu'. The Zoo trains "
        "1e6 steps; its settings have no schedules, so the shorter budget only stops it earlier.",
        f"- {env} returns are the raw env returns (Monitor, before VecNormalize) of the last "
        f"{cont['window']} finished 1000-step episodes after the last update; wall-clock includes "
        "building the envs and the model. Ours steps its copies in lockstep, so its episodes end "
        f"together every {envs}x1000 steps: its last ones ran during the "
        f"{envs:,}k steps before the last multiple of {envs:,}k (SB3's, during "
        "the last 10k steps).",
        f"- {env} starting points differ: SB3's initial policy (log_std_init=-2, std 0.14) scores "
        "about -20, HalfCheetah's control cost being small for small actions; ours (log std 0: a "
        "std of half the action range) starts near a random policy's -300.",
    ]


def plot(results: dict, axis) -> None:
    """Learning curves against env steps (the same budget for both), with each
    implementation's median wall-clock and speed in the legend."""
    cont = results["continuous"]
    names = {
        "ours": f"ours ({cont['our_envs']} envs)",
        "sb3": f"SB3, RL Zoo settings ({cont['sb3_envs']} env" + ("s" if cont["sb3_envs"] != 1 else "") + ")",
    }
    for impl, runs in cont["runs"].items():
        s = cont["summary"][impl]
        legend = names[impl] + (
            "" if "status" in s else f": {fmt(s['median_time'], 0, ' s')}, {fmt(s['steps_per_s'])} steps/s"
        )
        first = True
        for run_ in runs:
            if not ok(run_) or not run_.get("records"):
                continue
            axis.plot(
                [r["steps"] for r in run_["records"]],
                [r["mean_return"] for r in run_["records"]],
                color=COLORS[impl],
                alpha=0.8,
                label=legend if first else None,
            )
            first = False
    axis.set_xlabel("env steps")
    axis.set_ylabel(f"mean return of the last {cont['window']} episodes")
    axis.set_title(f"{cont['env']} learning curves at a fixed budget (one line per seed)", fontsize=10)
    if axis.get_legend_handles_labels()[0]:
        axis.legend(loc="best", fontsize=8)


if __name__ == "__main__":
    import sys

    import bench

    bench.main(["--only", "continuous", *sys.argv[1:]])
