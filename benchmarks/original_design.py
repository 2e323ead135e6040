"""A small model of the ORIGINAL project's data path, for timing against this one.

The original (github.com/Raven4567/Parallel-Reinforcement-Learning) is modelled here from a
description of its design, not from its code:

- episode-synchronous rounds: every one of N deep-copied gym envs plays one episode; the envs
  still running are stepped one by one in a Python loop, after one batched policy call;
- a VecMemory of per-env Python lists, filled by one `push(idx, state, action, reward, done)`
  call per env per step, every value converted with `.astype(np.float32)`;
  `done = terminated | truncated` (a time limit counts as a termination);
- the transfer lays the per-env lists end to end with `sum(lists, [])`;
- `learn()` returns early while fewer than `batch_size` samples are stored; otherwise it stacks
  the lists into tensors, computes old log-probs and values in mini-batches through a torch
  DataLoader, computes GAE with a Python loop over every stored step (building the list with
  `insert(0, ...)`), then trains `k_epochs` passes of DataLoader mini-batches with gradient
  accumulation (loss / (batch_size // mini_batch_size), one AdamW step, grad-norm clip 0.5,
  every batch_size // mini_batch_size mini-batches);
- network: a shared torso Linear(obs, 64, bias=False) + GroupNorm(4, 64) + SiLU, an actor head
  Linear-GroupNorm-SiLU-Linear-Softmax and a critic head built the same way, a Categorical;
- loss = -min(surr1, surr2).mean() + 0.5 * SmoothL1(values, returns) - 0.01 * entropy.detach().

Defaults are the original README's: 32 envs, lr 1e-3, k_epochs 11, GAE lambda 0.95, batch 1024,
mini-batch 512, gamma 0.995, clip 0.2. Discrete actions only (CartPole is what it is timed on).

Two details the description leaves open, chosen so that the model matches what the original is
reported to do on this kind of machine (~7.7k env steps/s whole loop, CartPole solved in ~16 s):
- `normalize_advantages=True`: advantages are standardised over the batch after GAE. Without it
  the model plateaus near a mean return of 300 and does not solve CartPole within 300k steps.
- `loader="batched"`: the DataLoader draws whole mini-batches of row indices (a BatchSampler over
  the TensorDataset), the same shuffled mini-batches as the textbook
  `DataLoader(TensorDataset(...), batch_size=..., shuffle=True)`, which fetches and collates row
  by row. `loader="per_sample"` selects the textbook form: identical learning, but about 1.8x
  slower whole loop (~4.5k steps/s here), as the per-row fetching dominates `learn()`.

    run_original("CartPole-v1", seed=0, steps=300_000, stop_return=475)  # per-round records
    run_original_rollout("CartPole-v1", seed=0, steps=50_000)            # collection only
"""

from __future__ import annotations

import copy
import time
from collections import deque

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler, TensorDataset

README_SETTINGS = dict(
    num_envs=32,
    lr=1e-3,
    k_epochs=11,
    gae_lambda=0.95,
    batch_size=1024,
    mini_batch_size=512,
    gamma=0.995,
    policy_clip=0.2,
)


class VecMemory:
    """One Python list per env and per field."""

    def __init__(self, num_envs: int):
        self.num_envs = num_envs
        self.clear()

    def clear(self) -> None:
        self.states = [[] for _ in range(self.num_envs)]
        self.actions = [[] for _ in range(self.num_envs)]
        self.rewards = [[] for _ in range(self.num_envs)]
        self.dones = [[] for _ in range(self.num_envs)]

    def push(self, idx: int, state, action, reward, done) -> None:
        self.states[idx].append(state.astype(np.float32))
        self.actions[idx].append(action.astype(np.float32))
        self.rewards[idx].append(reward.astype(np.float32))
        self.dones[idx].append(done.astype(np.float32))


class Memory:
    """The learner's flat lists."""

    def __init__(self):
        self.clear()

    def clear(self) -> None:
        self.states, self.actions, self.rewards, self.dones = [], [], [], []


def transfer(vec_memory: VecMemory, memory: Memory) -> None:
    """Lays the per-env lists end to end (each env's trajectories stay contiguous)."""
    memory.states += sum(vec_memory.states, [])
    memory.actions += sum(vec_memory.actions, [])
    memory.rewards += sum(vec_memory.rewards, [])
    memory.dones += sum(vec_memory.dones, [])
    vec_memory.clear()


def _norm_block(in_dim: int, out_dim: int) -> list[nn.Module]:
    return [nn.Linear(in_dim, out_dim, bias=False), nn.GroupNorm(4, out_dim), nn.SiLU()]


class Policy(nn.Module):
    def __init__(self, observ_dim: int, action_dim: int, hidden: int = 64):
        super().__init__()
        self.torso = nn.Sequential(*_norm_block(observ_dim, hidden))
        self.actor = nn.Sequential(
            *_norm_block(hidden, hidden), nn.Linear(hidden, action_dim), nn.Softmax(dim=-1)
        )
        self.critic = nn.Sequential(*_norm_block(hidden, hidden), nn.Linear(hidden, 1))

    def forward(self, states: torch.Tensor):
        features = self.torso(states)
        return torch.distributions.Categorical(probs=self.actor(features)), self.critic(features).squeeze(-1)


class OriginalPPO:
    def __init__(
        self,
        observ_dim: int,
        action_dim: int,
        lr: float,
        k_epochs: int,
        gae_lambda: float,
        batch_size: int,
        mini_batch_size: int,
        gamma: float,
        policy_clip: float,
        normalize_advantages: bool = True,
        loader: str = "batched",
    ):
        self.policy = Policy(observ_dim, action_dim)
        self.optimizer = torch.optim.AdamW(self.policy.parameters(), lr=lr)
        self.k_epochs, self.gae_lambda, self.gamma = k_epochs, gae_lambda, gamma
        self.batch_size, self.mini_batch_size, self.policy_clip = batch_size, mini_batch_size, policy_clip
        self.normalize_advantages, self.loader = normalize_advantages, loader
        self.memory = Memory()

    def _loader(self, *tensors: torch.Tensor, shuffle: bool) -> DataLoader:
        """Mini-batches of `mini_batch_size` rows. "per_sample": the usual DataLoader over a
        TensorDataset (fetches row by row, then collates); "batched": the DataLoader indexes
        the tensors once per mini-batch (a BatchSampler), same batches, no per-row work."""
        dataset = TensorDataset(*tensors)
        if self.loader == "per_sample":
            return DataLoader(dataset, batch_size=self.mini_batch_size, shuffle=shuffle)
        order = RandomSampler(dataset) if shuffle else SequentialSampler(dataset)
        return DataLoader(
            dataset, batch_size=None, sampler=BatchSampler(order, self.mini_batch_size, drop_last=False)
        )

    @torch.no_grad()
    def get_action(self, states: torch.Tensor) -> np.ndarray:
        dist, _ = self.policy(states)
        return dist.sample().numpy()

    def _gae(self, rewards: list, values: list, dones: list) -> list:
        advantages, gae = [], 0.0
        for i in reversed(range(len(rewards))):
            next_value = values[i + 1] if i + 1 < len(values) else 0.0
            not_done = 1.0 - dones[i]
            delta = rewards[i] + self.gamma * next_value * not_done - values[i]
            gae = delta + self.gamma * self.gae_lambda * not_done * gae
            advantages.insert(0, gae)
        return advantages

    def learn(self) -> bool:
        if len(self.memory.states) < self.batch_size:
            return False
        states = torch.from_numpy(np.stack(self.memory.states))
        actions = torch.from_numpy(np.stack(self.memory.actions))
        rewards = np.stack(self.memory.rewards).tolist()
        dones = np.stack(self.memory.dones).tolist()
        self.memory.clear()

        old_log_probs, old_values = [], []
        with torch.no_grad():
            for s, a in self._loader(states, actions, shuffle=False):
                dist, values = self.policy(s)
                old_log_probs.append(dist.log_prob(a))
                old_values.append(values)
        old_log_probs, old_values = torch.cat(old_log_probs), torch.cat(old_values)

        advantages = torch.tensor(self._gae(rewards, old_values.tolist(), dones), dtype=torch.float32)
        returns = advantages + old_values
        if self.normalize_advantages:
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)

        accumulate = max(1, self.batch_size // self.mini_batch_size)
        loader = self._loader(states, actions, old_log_probs, advantages, returns, shuffle=True)
        smooth_l1 = nn.SmoothL1Loss()
        for _ in range(self.k_epochs):
            self.optimizer.zero_grad()
            for n, (s, a, old_lp, adv, ret) in enumerate(loader, start=1):
                dist, values = self.policy(s)
                ratio = torch.exp(dist.log_prob(a) - old_lp)
                surr1 = ratio * adv
                surr2 = ratio.clamp(1 - self.policy_clip, 1 + self.policy_clip) * adv
                loss = (
                    -torch.min(surr1, surr2).mean()
                    + 0.5 * smooth_l1(values, ret)
                    - 0.01 * dist.entropy().mean().detach()
                )
                (loss / accumulate).backward()
                if n % accumulate == 0:
                    nn.utils.clip_grad_norm_(self.policy.parameters(), 0.5)
                    self.optimizer.step()
                    self.optimizer.zero_grad()
        return True


def _make_envs(env_id: str, num_envs: int) -> list[gym.Env]:
    env = gym.make(env_id)
    if not isinstance(env.action_space, gym.spaces.Discrete):
        raise TypeError("the model of the original design covers Discrete actions only")
    return [env] + [copy.deepcopy(env) for _ in range(num_envs - 1)]


def play_round(
    envs: list[gym.Env], vec_memory: VecMemory, agent: OriginalPPO, seed: int | None = None
) -> tuple[int, list[float]]:
    """One episode in every env; returns (env steps, the episodes' returns)."""
    states = np.stack([env.reset(seed=None if seed is None else seed + i)[0] for i, env in enumerate(envs)])
    running = list(range(len(envs)))
    returns = [0.0] * len(envs)
    steps = 0
    while running:
        actions = agent.get_action(torch.from_numpy(states.astype(np.float32)))
        next_running, next_states = [], []
        for row, idx in enumerate(running):
            next_state, reward, terminated, truncated, _ = envs[idx].step(actions[row])
            done = np.array(terminated | truncated)
            vec_memory.push(idx, states[row], actions[row], np.array(reward), done)
            returns[idx] += float(reward)
            steps += 1
            if not done:
                next_running.append(idx)
                next_states.append(next_state)
        running = next_running
        if running:
            states = np.stack(next_states)
    return steps, returns


def run_original(
    env_id: str = "CartPole-v1",
    seed: int = 0,
    steps: int = 300_000,
    stop_return: float | None = None,
    window: int = 32,
    **settings,
) -> dict:
    """Trains the model of the original design, round after round, until `steps` env steps or
    until the mean return of the last `window` episodes reaches `stop_return`.

    Returns {"records": [{"time", "steps", "mean_return"} per round], "steps", "time",
    "solved" (None without stop_return), "steps_per_s"}. `time` counts from building the envs.
    """
    cfg = {**README_SETTINGS, **settings}
    torch.manual_seed(seed)
    start = time.perf_counter()
    envs = _make_envs(env_id, cfg["num_envs"])
    agent = OriginalPPO(
        int(np.prod(envs[0].observation_space.shape)),
        int(envs[0].action_space.n),
        **{k: v for k, v in cfg.items() if k != "num_envs"},
    )
    vec_memory = VecMemory(cfg["num_envs"])
    recent = deque(maxlen=window)
    records, total, solved, first = [], 0, None if stop_return is None else False, True
    while total < steps:
        round_steps, returns = play_round(envs, vec_memory, agent, seed if first else None)
        first = False
        transfer(vec_memory, agent.memory)
        agent.learn()
        total += round_steps
        recent.extend(returns)
        mean_return = float(np.mean(recent))
        records.append(dict(time=time.perf_counter() - start, steps=total, mean_return=mean_return))
        if stop_return is not None and len(recent) == window and mean_return >= stop_return:
            solved = True
            break
    elapsed = time.perf_counter() - start
    return dict(records=records, steps=total, time=elapsed, solved=solved, steps_per_s=total / elapsed)


def run_original_rollout(
    env_id: str = "CartPole-v1", seed: int = 0, steps: int = 50_000, num_envs: int = 32
) -> dict:
    """Collection only (rounds of episodes with the untrained policy, pushes included, memory
    cleared after each round, no learning). Returns {"steps", "time", "steps_per_s"}."""
    torch.manual_seed(seed)
    envs = _make_envs(env_id, num_envs)
    agent = OriginalPPO(
        int(np.prod(envs[0].observation_space.shape)),
        int(envs[0].action_space.n),
        **{k: v for k, v in README_SETTINGS.items() if k != "num_envs"},
    )
    vec_memory = VecMemory(num_envs)
    play_round(envs, vec_memory, agent, seed)  # warm-up
    vec_memory.clear()
    total, start = 0, time.perf_counter()
    while total < steps:
        total += play_round(envs, vec_memory, agent)[0]
        vec_memory.clear()
    elapsed = time.perf_counter() - start
    return dict(steps=total, time=elapsed, steps_per_s=total / elapsed)


if __name__ == "__main__":
    torch.set_num_threads(1)
    result = run_original("CartPole-v1", seed=0, steps=300_000, stop_return=475)
    print(
        f"solved={result['solved']} steps={result['steps']} time={result['time']:.1f}s "
        f"steps/s={result['steps_per_s']:.0f}"
    )
    print(run_original_rollout("CartPole-v1", seed=0, steps=50_000))
