"""Do the fast tests catch a broken learner? Deliberate bugs, applied one at a time to a copy of
the project, each followed by the fast lane (`pytest -m "not slow" -x`); a bug is caught when the
lane fails. Run on demand (not in CI):

    python benchmarks/mutation_check.py                 # every mutation, ~10-20 min on 2 cores
    python benchmarks/mutation_check.py --only surrogate-max value-clip-min
    python benchmarks/mutation_check.py --list

Writes benchmarks/results/mutation_check.json and prints caught/total; the README's testing
section quotes the figure. A mutation whose original text is no longer in the code is reported
as stale (edit its text here when the code moves), never silently skipped.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from harness import REPO as REPO_ROOT
from harness import save_json

RESULTS = REPO_ROOT / "benchmarks" / "results" / "mutation_check.json"
# The files most likely to catch a learner bug run first, so a caught mutation stops early.
FIRST_TESTS = [
    "tests/test_objective.py",
    "tests/test_update.py",
    "tests/test_ppo.py",
    "tests/test_advantages.py",
    "tests/test_learner_details.py",
    "tests/test_rnd.py",
]


@dataclass(frozen=True)
class Mutation:
    name: str
    file: str
    original: str
    mutated: str


M = Mutation
MUTATIONS = [
    # the clipped objective (PPO/losses.py)
    M(
        "surrogate-max",
        "PPO/losses.py",
        "surrogate = torch.min(ratio * advantages,",
        "surrogate = torch.max(ratio * advantages,",
    ),
    M(
        "surrogate-no-clamp",
        "PPO/losses.py",
        "ratio.clamp(1 - policy_clip, 1 + policy_clip) * advantages",
        "ratio * advantages",
    ),
    M(
        "ratio-inverted",
        "PPO/losses.py",
        "log_ratio = log_probs - old_log_probs",
        "log_ratio = old_log_probs - log_probs",
    ),
    M(
        "no-advantage-normalisation",
        "PPO/losses.py",
        "advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)",
        "advantages = advantages",
    ),
    M(
        "normalisation-always-on",
        "PPO/losses.py",
        "if normalize_advantages and advantages.numel() > 1:",
        "if advantages.numel() > 1:",
    ),
    M(
        "normalisation-no-std",
        "PPO/losses.py",
        "(advantages - advantages.mean()) / (advantages.std() + 1e-8)",
        "(advantages - advantages.mean())",
    ),
    M(
        "surrogate-sign",
        "PPO/losses.py",
        "return -surrogate.mean(), ratio, log_ratio",
        "return surrogate.mean(), ratio, log_ratio",
    ),
    # the value loss
    M(
        "value-clip-min",
        "PPO/losses.py",
        "error = torch.max(error, (clipped - returns).square())",
        "error = torch.min(error, (clipped - returns).square())",
    ),
    M(
        "value-clip-no-clamp",
        "PPO/losses.py",
        "(values - old_values).clamp(-value_clip, value_clip)",
        "(values - old_values)",
    ),
    M(
        "value-loss-no-half",
        "PPO/losses.py",
        "return 0.5 * error.reshape(len(error), -1).sum(-1).mean()",
        "return error.reshape(len(error), -1).sum(-1).mean()",
    ),
    # the total loss and the step
    M("entropy-sign", "PPO/PPO.py", "- self.entropy_coef * entropy", "+ self.entropy_coef * entropy"),
    M("entropy-dropped", "PPO/PPO.py", "- self.entropy_coef * entropy", "- 0.0 * entropy"),
    M(
        "value-coef-ignored",
        "PPO/PPO.py",
        "policy_loss + self.value_coef * value_loss",
        "policy_loss + value_loss",
    ),
    M(
        "no-gradient-clipping",
        "PPO/PPO.py",
        "clip_grad_norm(self._policy_parameters, self.max_grad_norm)",
        "pass",
    ),
    M(
        "gradient-clip-scales-up",
        "PPO/losses.py",
        "scale = (max_norm / (total_norm + 1e-6)).clamp(max=1.0)",
        "scale = max_norm / (total_norm + 1e-6)",
    ),
    M(
        "target-kl-sum",
        "PPO/PPO.py",
        "epoch_kl.item() / minibatches_per_epoch > self.target_kl",
        "epoch_kl.item() > self.target_kl",
    ),
    M(
        "target-kl-inverted",
        "PPO/PPO.py",
        "epoch_kl.item() / minibatches_per_epoch > self.target_kl",
        "epoch_kl.item() / minibatches_per_epoch < self.target_kl",
    ),
    M(
        "approx-kl-sign",
        "PPO/PPO.py",
        "approx_kl = ((ratio - 1) - log_ratio).mean()",
        "approx_kl = (log_ratio - (ratio - 1)).mean()",
    ),
    M(
        "lr-anneal-half",
        "PPO/ppo_base.py",
        "1.0 - self.samples_learned / self.total_steps",
        "1.0 - self.samples_learned / (2 * self.total_steps)",
    ),
    M(
        "obs-statistics-frozen",
        "PPO/PPO.py",
        "            self.policy.obs_normalizer.update(states)\n",
        "            pass\n",
    ),
    M(
        "obs-statistics-before-behaviour",
        "PPO/PPO.py",
        "        log_probs_now, old_values = _scores(self.policy, states, actions)\n",
        "        if self.policy.obs_normalizer is not None:\n"
        "            self.policy.obs_normalizer.update(states)\n"
        "        log_probs_now, old_values = _scores(self.policy, states, actions)\n",
    ),
    M(
        "behaviour-log-probs-ignored",
        "PPO/PPO.py",
        "behaviour_log_probs = torch.where(torch.isnan(recorded), log_probs_now, recorded)",
        "behaviour_log_probs = log_probs_now",
    ),
    M(
        "lag-ratio-against-behaviour",
        "PPO/losses.py",
        "    return learner_log_probs, weights",
        "    return behaviour_log_probs, weights",
    ),
    M(
        "lag-weights-ignored",
        "PPO/losses.py",
        "        surrogate = sample_weights * surrogate",
        "        surrogate = surrogate",
    ),
    M(
        "lag-weights-untruncated",
        "PPO/losses.py",
        "(learner_log_probs - behaviour_log_probs).exp().clamp(max=max_lag_weight)",
        "(learner_log_probs - behaviour_log_probs).exp()",
    ),
    M(
        "lag-weights-inverted",
        "PPO/losses.py",
        "(learner_log_probs - behaviour_log_probs).exp().clamp(max=max_lag_weight)",
        "(behaviour_log_probs - learner_log_probs).exp().clamp(max=max_lag_weight)",
    ),
    M(
        "explained-variance-sign",
        "PPO/PPO.py",
        "torch.var(extrinsic_returns - extrinsic_values)",
        "torch.var(extrinsic_returns + extrinsic_values)",
    ),
    # advantages and returns
    M(
        "termination-bootstraps",
        "PPO/advantages.py",
        "torch.where(ends, final_values, following).masked_fill(batch.terminated, 0.0)",
        "torch.where(ends, final_values, following)",
    ),
    M(
        "truncation-cut",
        "PPO/advantages.py",
        "torch.where(ends, final_values, following)",
        "torch.where(ends, 0 * final_values, following)",
    ),
    M(
        "rnd-coefficients-swapped",
        "PPO/PPO.py",
        "self.extrinsic_coef * extrinsic + self.beta * intrinsic",
        "self.beta * extrinsic + self.extrinsic_coef * intrinsic",
    ),
    M(
        "gae-bootstrap-undiscounted",
        "PPO/advantages.py",
        "rewards + gamma * next_values - values, 0.0",
        "rewards + next_values - values, 0.0",
    ),
    M(
        "gae-flows-across-ends",
        "PPO/advantages.py",
        "(gamma * gae_lambda) * (~ends.bool()).to(d.dtype)",
        "(gamma * gae_lambda) * torch.ones_like(d)",
    ),
    M(
        "next-value-not-skipping-invalid-rows",
        "PPO/advantages.py",
        "carried = torch.where(valid[t], x[t], carried)",
        "carried = x[t]",
    ),
    M("gae-no-lambda", "PPO/advantages.py", "(gamma * gae_lambda)", "(gamma)"),
    # distributions (PPO/ActorCritic.py)
    M(
        "squash-correction-sign",
        "PPO/ActorCritic.py",
        "log_probs = log_probs - torch.log1p(-unit_actions.square()).sum(-1)",
        "log_probs = log_probs + torch.log1p(-unit_actions.square()).sum(-1)",
    ),
    M(
        "gaussian-entropy-sign",
        "PPO/ActorCritic.py",
        "entropy = (0.5 + HALF_LOG_2PI + log_std).sum(-1)",
        "entropy = (0.5 + HALF_LOG_2PI - log_std).sum(-1)",
    ),
    M(
        "categorical-entropy-sign",
        "PPO/ActorCritic.py",
        "entropies.append(-(block_log_probs.exp() * block_log_probs).sum(-1))",
        "entropies.append((block_log_probs.exp() * block_log_probs).sum(-1))",
    ),
    M(
        "action-jacobian-dropped",
        "PPO/ActorCritic.py",
        "log_probs = log_probs - torch.log(self.action_half_range).sum()",
        "log_probs = log_probs",
    ),
    M(
        "multi-input-drops-vector-parts",
        "PPO/ActorCritic.py",
        "if len(part) == 3 else chunk.float())",
        "if len(part) == 3 else 0 * chunk.float())",
    ),
    # statistics (PPO/normalization.py)
    M(
        "running-mean-unweighted",
        "PPO/normalization.py",
        "self.mean += delta * batch_count / total",
        "self.mean += delta",
    ),
    # collection (AsyncTools)
    M(
        "env-actions-unclipped",
        "AsyncTools/vectorizer.py",
        "return full if self._clip_bounds is None else np.clip(full, *self._clip_bounds)",
        "return full",
    ),
    M(
        "memory-open-episodes-not-cut",
        "AsyncTools/vec_memory.py",
        '            arrays["truncated"][last_rows[open_envs], open_envs] = True\n',
        "            pass\n",
    ),
    M(
        "memory-episode-starts-inverted",
        "AsyncTools/vec_memory.py",
        'columns["episode_starts"] = ~self._in_episode[envs]',
        'columns["episode_starts"] = self._in_episode[envs]',
    ),
    M(
        "nan-rewards-pass",
        "AsyncTools/vectorizer.py",
        "        if finite.all():\n            return array\n",
        "        if True:\n            return array\n",
    ),
    M(
        "envpool-game-score-unreset",
        "AsyncTools/envpool_backend.py",
        "        self.games.end(game_over)\n",
        "        pass\n",
    ),
    M(
        "rollout-flags-swapped",
        "AsyncTools/rollout.py",
        "                terminated,\n                truncated,\n                next_states,\n",
        "                truncated,\n                terminated,\n                next_states,\n",
    ),
]


def project_files() -> list[str]:
    """Tracked and untracked, not ignored: what a clean clone plus the working changes hold."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    return [name for name in listed if name and (REPO_ROOT / name).is_file()]


def copy_project(destination: Path) -> None:
    for name in project_files():
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / name, target)


def apply(mutation: Mutation, root: Path) -> bool:
    """Applies `mutation` in the copy at `root`; False if its original text is not there once."""
    file = root / mutation.file
    text = file.read_text()
    if text.count(mutation.original) != 1:
        return False
    file.write_text(text.replace(mutation.original, mutation.mutated))
    return True


def fast_lane(root: Path, timeout: float) -> tuple[bool, str]:
    """Runs the fast tests in `root`; (caught, the first failing test or why)."""
    others = sorted(str(file.relative_to(root)) for file in (root / "tests").glob("test_*.py"))
    order = FIRST_TESTS + [name for name in others if name not in FIRST_TESTS]  # pytest keeps it
    command = [sys.executable, "-m", "pytest", "-m", "not slow", "-x", "-q", "-p", "no:cacheprovider", *order]
    try:
        done = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return True, f"timed out after {timeout:.0f} s"
    failed = [line for line in done.stdout.splitlines() if line.startswith(("FAILED", "ERROR"))]
    return done.returncode != 0, (failed[0] if failed else done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", nargs="*", default=None, help="run these mutations by name")
    parser.add_argument("--list", action="store_true", help="list the mutations and stop")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per fast-lane run")
    args = parser.parse_args()
    chosen = [m for m in MUTATIONS if args.only is None or m.name in args.only]
    unknown = set(args.only or ()) - {m.name for m in MUTATIONS}
    if unknown:
        parser.error(f"--only: no mutation named {sorted(unknown)}")
    if args.list:
        for m in chosen:
            print(f"{m.name:28s} {m.file}")
        return

    results = []
    with tempfile.TemporaryDirectory(prefix="mutation-") as folder:
        pristine = Path(folder) / "pristine"
        copy_project(pristine)
        caught, reason = fast_lane(pristine, args.timeout)
        if caught:
            sys.exit(f"the fast lane fails without any mutation: {reason}")
        for mutation in chosen:
            root = Path(folder) / mutation.name
            shutil.copytree(pristine, root)
            start = time.perf_counter()
            if not apply(mutation, root):
                outcome, reason = "stale", f"original text not found once in {mutation.file}"
            else:
                caught, reason = fast_lane(root, args.timeout)
                outcome = "caught" if caught else "SURVIVED"
            seconds = time.perf_counter() - start
            shutil.rmtree(root)
            results.append(
                dict(
                    name=mutation.name,
                    file=mutation.file,
                    outcome=outcome,
                    seconds=round(seconds, 1),
                    detail=reason,
                )
            )
            print(f"{outcome:8s} {mutation.name:28s} {seconds:6.1f} s  {reason}", flush=True)

    caught_count = sum(r["outcome"] == "caught" for r in results)
    print(f"\ncaught {caught_count}/{len(results)}")
    if args.only is None:
        save_json(RESULTS, dict(caught=caught_count, total=len(results), mutations=results))
        print(f"wrote {RESULTS.relative_to(REPO_ROOT)}")
    if caught_count < len(results):
        sys.exit(1)


if __name__ == "__main__":
    main()
