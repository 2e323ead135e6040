"""The learners bench.py's sections time, each run called in a fresh process (harness.call_fresh):
our whole loop (`train_ours`) and the pieces of Stable-Baselines3 runs every section shares, with
how a run's result reads (`ok`, `status`, `loop_rate`)."""

from __future__ import annotations

import time
from collections import deque

SOLVE_RETURN = 475.0  # CartPole-v1 is solved when the last 32 episodes average >= 475
SOLVE_WINDOW = 32
COLORS = {"ours": "tab:blue", "sb3": "tab:orange", "original": "tab:green"}


def next_round(runner) -> tuple[int, list[float]]:
    """One round of our trainer (collection + learn): `train_round()` where AsyncPPO has it,
    else `run()` with the step budget set one step past what is done (run() always finishes
    the round it starts, so this runs exactly one round). Returns (env steps, finished
    episodes' returns)."""
    if hasattr(runner, "train_round"):
        result = runner.train_round()
        return int(result.steps), [float(r) for r in result.episode_returns]
    done_before, returns_before = runner.total_steps, len(runner.episode_returns)
    runner.steps = runner.total_steps + 1
    runner.run()
    return runner.total_steps - done_before, runner.episode_returns[returns_before:]


def make_our_runner(env_id: str, seed: int, steps: int, options: dict, ppo_options: dict, num_envs: int = 32):
    """(AsyncPPO with `ppo_for_env`, None), or (None, why) when AsyncPPO rejects `options`."""
    import gymnasium as gym

    from AsyncTools.AsyncPPO import AsyncPPO, ppo_for_env

    env = gym.make(env_id)
    ppo = ppo_for_env(env, seed=seed, device="cpu", **ppo_options)
    try:
        runner = AsyncPPO(env, ppo, num_envs=num_envs, steps=steps, progress_bar=False, **options)
    except TypeError as error:
        if not options:
            raise
        return None, f"AsyncPPO rejects {sorted(options)}: {error}"
    return runner, None


def describe_runner(runner) -> dict:
    env = runner.env
    return dict(
        backend=getattr(env, "backend_name", "?"),
        rollout=str(getattr(runner, "rollout", "episodes")),
        driven_by="train_round" if hasattr(runner, "train_round") else "run",
    )


def train_ours(
    env_id: str,
    seed: int,
    steps: int,
    stop_return: float | None = None,
    window: int = SOLVE_WINDOW,
    options: dict | None = None,
    ppo_options: dict | None = None,
    num_envs: int = 32,
) -> dict:
    """Our whole loop (collection + learning), round by round, until `steps` env steps or the
    mean of the last `window` episode returns reaches `stop_return`."""
    start = time.perf_counter()
    runner, na = make_our_runner(env_id, seed, steps, options or {}, ppo_options or {}, num_envs)
    if runner is None:
        return dict(na=na)
    recent, records, total, solved = deque(maxlen=window), [], 0, None
    while total < steps:
        round_steps, returns = next_round(runner)
        total += round_steps
        recent.extend(returns)
        mean = float(sum(recent) / len(recent)) if recent else float("nan")
        records.append(dict(time=time.perf_counter() - start, steps=total, mean_return=mean))
        if stop_return is not None:
            solved = len(recent) == window and mean >= stop_return
            if solved:
                break
    elapsed = time.perf_counter() - start
    return dict(
        records=records,
        steps=total,
        time=elapsed,
        solved=solved,
        steps_per_s=total / elapsed,
        last_mean=records[-1]["mean_return"],
        num_envs=num_envs,
        **describe_runner(runner),
    )


def sb3_recorder(start: float, window: int, stop_return: float | None):
    """An SB3 callback that, after each rollout, records (time, steps, mean of the last
    `window` finished episodes from the Monitor 'episode' infos) and stops once solved."""
    from stable_baselines3.common.callbacks import BaseCallback

    class Recorder(BaseCallback):
        def __init__(self):
            super().__init__()
            self.records, self.solved = [], None if stop_return is None else False

        def _on_step(self) -> bool:
            return not self.solved  # stops at the first step after the solving rollout

        def _on_rollout_end(self) -> None:
            returns = [info["r"] for info in self.model.ep_info_buffer][-window:]
            mean = float(sum(returns) / len(returns)) if returns else float("nan")
            self.records.append(
                dict(time=time.perf_counter() - start, steps=int(self.model.num_timesteps), mean_return=mean)
            )
            if stop_return is not None and len(returns) == window and mean >= stop_return:
                self.solved = True

    return Recorder()


def sb3_result(model, recorder, start: float, planned_steps: int) -> dict:
    """An SB3 run's result, in train_ours's keys."""
    records = recorder.records
    if recorder.solved:  # time and steps at the end of the solving rollout
        steps, elapsed = records[-1]["steps"], records[-1]["time"]
    else:
        steps, elapsed = int(model.num_timesteps), time.perf_counter() - start
    return dict(
        records=records,
        steps=steps,
        time=elapsed,
        solved=recorder.solved,
        steps_per_s=steps / elapsed,
        last_mean=records[-1]["mean_return"] if records else None,
        planned_steps=planned_steps,
    )


def sb3_last_mean(model, window: int) -> float:
    """Mean raw return of the last `window` finished episodes, after the last update too."""
    returns = [info["r"] for info in model.ep_info_buffer][-window:]
    return float(sum(returns) / len(returns)) if returns else float("nan")


def linear(initial: float):
    """RL Zoo's linear schedule: `initial` decayed to 0 over the run."""
    return lambda progress_remaining: progress_remaining * initial


def ok(result: dict) -> bool:
    return "error" not in result and "na" not in result


def status(result: dict) -> str:
    """A run's result in words: its error, why it does not apply, or its speed."""
    if "error" in result:
        return "error: " + result["error"]
    if "na" in result:
        return "n/a: " + result["na"]
    if "steps_per_s" in result:
        text = f"{result['steps_per_s']:,.0f} steps/s"
        if result.get("solved") is not None:
            text += (
                f", {'solved' if result['solved'] else 'not solved'} at "
                f"{result['steps']:,} steps, {result['time']:.1f} s"
            )
        return text
    return "ok"


def loop_rate(records: list[dict]) -> float:
    """Env steps per second of the training loop itself: from the end of the first round (or
    rollout) to the last, so that building the envs and model, which every run pays once,
    does not count against the runs that finish soonest."""
    if len(records) < 2 or records[-1]["time"] <= records[0]["time"]:
        return float("nan")
    first, last = records[0], records[-1]
    return (last["steps"] - first["steps"]) / (last["time"] - first["time"])
