"""Fixed-horizon collection (autoreset, episodes running across rounds) against a plain
per-env Python reference: the stored batch, its advantages, the round's episode statistics,
AsyncPPO(rollout="steps") and VecMemory's `valid` rows."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import counter_factory, make_counter_env

from AsyncTools import utils
from AsyncTools.AsyncPPO import AsyncPPO
from AsyncTools.rollout import FixedHorizonLoop
from AsyncTools.vec_memory import VecMemory
from AsyncTools.vectorizer import EnvVectorizer
from PPO import PPO
from PPO.Memory import Memory

# Copy i: (episode length, how it ends); offsets 100 * i. Lengths 3, 4, 2, 5 and horizons of 7
# and 6 steps: an episode ends exactly at the first horizon (copy 0), others span both calls,
# the 'both' copy terminates and truncates at once.
SPECS = [(3, "terminate"), (4, "truncate"), (2, "both"), (5, "terminate")]
WINDOWS = (7, 6)
FIELDS = (
    "states",
    "actions",
    "rewards",
    "terminated",
    "truncated",
    "final_states",
    "env_ids",
    "episode_starts",
)


def parity_actions(states: np.ndarray) -> np.ndarray:
    """A fixed policy: the parity of the counter (so every action says which state it saw)."""
    return np.asarray(states)[:, 0].astype(np.int64) % 2


def parity_policy(states: np.ndarray) -> tuple[np.ndarray, None]:
    """`parity_actions` as the collection loops take a policy: (actions, no log-probs)."""
    return parity_actions(states), None


def reference_rollout(specs, windows, policy=parity_policy):
    """Steps fresh copies one by one in plain Python, with the same autoreset rule: a copy whose
    episode ended is reset on its next step, and that step stores nothing.

    Returns one entry per window: (segments, finished, stored, reset_rows) where `segments` are
    the window's trajectories in batch order (env 0 first), each a list of transitions
    (state, action, reward, terminated, truncated, next_state, env, starts_episode) closed either by an
    episode end or, at the horizon, as truncated; `finished` lists (return, length) of the episodes that
    ended in the window, in (step, env) order."""
    envs = [make_counter_env(length, end, offset=100.0 * i) for i, (length, end) in enumerate(specs)]
    states = [env.reset()[0] for env in envs]
    needs_reset = [False] * len(envs)
    returns, lengths = [0.0] * len(envs), [0] * len(envs)
    out = []
    for num_steps in windows:
        per_env: list[list[tuple]] = [[] for _ in envs]
        finished, reset_rows = [], 0
        for _ in range(num_steps):
            for i, env in enumerate(envs):
                if needs_reset[i]:
                    states[i] = env.reset()[0]
                    needs_reset[i] = False
                    reset_rows += 1
                    continue
                action = int(policy(states[i][None])[0][0])
                next_state, reward, terminated, truncated, _ = env.step(action)
                per_env[i].append(
                    (
                        states[i],
                        action,
                        float(reward),
                        bool(terminated),
                        bool(truncated),
                        next_state,
                        i,
                        lengths[i] == 0,
                    )
                )
                returns[i] += reward
                lengths[i] += 1
                if terminated or truncated:
                    finished.append((returns[i], lengths[i]))
                    returns[i], lengths[i] = 0.0, 0
                    needs_reset[i] = True
                states[i] = next_state
        segments = []
        for transitions in per_env:
            current = []
            for step in transitions:
                current.append(step)
                if step[3] or step[4]:
                    segments.append(current)
                    current = []
            if current:  # the horizon cuts this episode: closed as truncated
                current[-1] = current[-1][:4] + (True,) + current[-1][5:]
                segments.append(current)
        stored = sum(len(t) for t in per_env)
        out.append((segments, finished, stored, reset_rows))
    return out


def expected_batch(segments) -> dict[str, np.ndarray]:
    rows = [step for segment in segments for step in segment]
    return {
        "states": np.array([r[0] for r in rows], dtype=np.float32),
        "actions": np.array([r[1] for r in rows], dtype=np.int64),
        "rewards": np.array([r[2] for r in rows], dtype=np.float32),
        "terminated": np.array([r[3] for r in rows], dtype=bool),
        "truncated": np.array([r[4] for r in rows], dtype=bool),
        "final_states": np.array([segment[-1][5] for segment in segments], dtype=np.float32),
        "env_ids": np.array([r[6] for r in rows], dtype=np.int64),
        "episode_starts": np.array([r[7] for r in rows], dtype=bool),
    }


def collect_batch(specs=SPECS, windows=WINDOWS):
    """Collects one round per window and transfers each to a learner's Memory. Returns (the
    rounds' transitions laid end to end, window after window, each window copy by copy: the
    reference's flat layout, as tensors; the rounds; the stored sizes; the Memory's rollout)."""
    env = EnvVectorizer(counter_factory(specs), len(specs), seed=0)
    collector = FixedHorizonLoop(env)
    buffer, memory, rounds, sizes = VecMemory(len(specs), initial_capacity=2), Memory("cpu"), [], []
    flat = []
    for num_steps in windows:
        rounds.append(collector.collect(buffer, parity_policy, num_steps))
        sizes.append(len(buffer))
        flat.append(buffer.trajectories())
        utils.buffer_to_target_buffer_transfer(buffer, memory)
        assert len(buffer) == 0
    flat = [part for part in flat if part]
    batch = SimpleNamespace(
        **{name: torch.from_numpy(np.concatenate([part[name] for part in flat])) for name in flat[0]}
    )
    return batch, rounds, sizes, memory.take()


def window_major(grid: torch.Tensor, valid: torch.Tensor, windows) -> np.ndarray:
    """A [T, N] grid of time-joined windows, laid out as `collect_batch`'s flat batch."""
    parts, start = [], 0
    for num_steps in windows:
        rows = slice(start, start + num_steps)
        parts.append(grid[rows].T[valid[rows].T].numpy())
        start += num_steps
    return np.concatenate(parts)


# ------------------------------------------------------------------ the stored batch
def test_collected_batch_equals_the_per_env_reference():
    batch, rounds, sizes, _ = collect_batch()
    reference = reference_rollout(SPECS, WINDOWS)
    expected = {name: np.concatenate([expected_batch(seg)[name] for seg, *_ in reference]) for name in FIELDS}
    for name in FIELDS:
        got = getattr(batch, name).numpy()
        assert got.dtype == expected[name].dtype, name
        assert np.array_equal(got, expected[name]), f"{name}:\n{got}\n!=\n{expected[name]}"
    # Sanity of the reference itself: the layout the scenario was built for.
    assert len(batch.states) == sum(stored for _, _, stored, _ in reference) == 41
    assert int((batch.terminated | batch.truncated).sum()) == len(batch.final_states) == 18


def test_reset_rows_are_never_stored_and_round_steps_count_transitions():
    batch, rounds, sizes, _ = collect_batch()
    reference = reference_rollout(SPECS, WINDOWS)
    for num_steps, round_, size, (_, _, stored, reset_rows) in zip(
        WINDOWS, rounds, sizes, reference, strict=True
    ):
        assert reset_rows > 0
        assert round_.steps == size == stored == len(SPECS) * num_steps - reset_rows
    # A reset row would store a state with t = 0 and the action taken on a final observation:
    # every stored state is a start state (t = 0) only at an episode's first step.
    states = batch.states.numpy()
    t = states[:, 0] % 100
    starts = np.flatnonzero(t == 0)
    previous_ends = (batch.terminated | batch.truncated).numpy()[starts - 1]
    assert starts[0] == 0 and previous_ends[1:].all()
    # Stored actions are what the policy chose for the stored state.
    assert np.array_equal(batch.actions.numpy(), parity_actions(states))


def test_round_episode_statistics_including_episodes_spanning_two_calls():
    _, rounds, _, _ = collect_batch()
    reference = reference_rollout(SPECS, WINDOWS)
    for round_, (_, finished, _, _) in zip(rounds, reference, strict=True):
        assert round_.episode_returns.tolist() == [r for r, _ in finished]
        assert round_.episode_lengths.tolist() == [n for _, n in finished]
        assert round_.episode_lengths.dtype == np.int64
    # Hand-checked (copy i's rewards are 100 * i + t): window 1 (steps 0-6) ends copy 2 at
    # step 1 (201+202), copy 0 at 2 (1+2+3), copy 1 at 3 (truncated, 101+..+104), copy 2 at 4,
    # copy 3 at 4 (301+..+305) and copy 0 at 6, the horizon's last step.
    assert rounds[0].episode_returns.tolist() == [403.0, 6.0, 410.0, 403.0, 1515.0, 6.0]
    assert rounds[0].episode_lengths.tolist() == [2, 3, 4, 2, 5, 3]
    # Window 2 (steps 7-12) opens with copy 0's reset row; episodes spanning the horizon end in
    # it: copy 2's (steps 6-7) at 7, copy 1's (5-8) at 8, copy 3's (6-10) at 10; copy 0's
    # (8-10) and copy 2's (9-10) end at 10 too.
    assert rounds[1].episode_returns.tolist() == [403.0, 410.0, 6.0, 403.0, 1515.0]
    assert rounds[1].episode_lengths.tolist() == [2, 4, 3, 2, 5]


@pytest.mark.parametrize(
    "specs,windows",
    [
        ([(1, "terminate"), (6, "both")], (4, 4, 3)),  # one-step episodes: every other row resets
        ([(3, "truncate")], (3, 3)),  # ends exactly at every horizon
        ([(2, "terminate"), (9, "truncate"), (4, "both")], (1, 1, 5)),  # one-step horizons
    ],
)
def test_other_layouts_equal_the_reference(specs, windows):
    batch, rounds, _, _ = collect_batch(specs, windows)
    reference = reference_rollout(specs, windows)
    for name in FIELDS:
        expected = np.concatenate([expected_batch(seg)[name] for seg, *_ in reference if seg])
        assert np.array_equal(getattr(batch, name).numpy(), expected), name
    for round_, (_, finished, stored, _) in zip(rounds, reference, strict=True):
        assert round_.steps == stored
        assert round_.episode_returns.tolist() == [r for r, _ in finished]
        assert round_.episode_lengths.tolist() == [n for _, n in finished]


# ----------------------------------------------------------------------- advantages
def naive_gae(segments, value, gamma, lam) -> tuple[np.ndarray, np.ndarray]:
    """Per-trajectory backward recursion in float64: bootstrap V(next state) inside an
    episode, V(final state) at a truncation or the horizon, 0 at a termination."""
    advantages, returns = [], []
    for segment in segments:
        seg_adv = [0.0] * len(segment)
        running = 0.0
        for k in range(len(segment) - 1, -1, -1):
            state, _, reward, terminated, truncated, next_state = segment[k][:6]
            if k == len(segment) - 1:
                next_value = 0.0 if terminated else value(next_state)
                running = 0.0
            else:
                next_value = value(segment[k + 1][0])
            delta = reward + gamma * next_value - value(state)
            running = delta + gamma * lam * running
            seg_adv[k] = running
        advantages += seg_adv
        returns += [a + value(s[0]) for a, s in zip(seg_adv, segment, strict=True)]
    return np.array(advantages), np.array(returns)


@pytest.mark.parametrize("critic", ["network", "linear"])
def test_gae_on_the_collected_batch_equals_the_naive_reference(critic):
    _, _, _, rollout = collect_batch()
    reference = reference_rollout(SPECS, WINDOWS)
    segments = [segment for segs, *_ in reference for segment in segs]
    ppo = PPO(False, 2, 2, gamma=0.9, GAE_lambda=0.8, seed=0, device="cpu", normalize_reward=False)
    if critic == "linear":  # a known value function: V(s) = 0.01 * t - 0.5 * last_action + 2
        ppo.policy.value = lambda obs: (0.01 * obs[:, 0] - 0.5 * obs[:, 1] + 2.0).float()

    def value(state) -> float:
        with torch.no_grad():
            return float(ppo.policy.value(torch.as_tensor(np.asarray(state, np.float32))[None])[0])

    valid = rollout.valid
    with torch.no_grad():
        values = ppo.policy.value(rollout.states.reshape(-1, 2)).reshape(valid.shape) * valid
    advantages, returns = ppo._advantages(rollout, values)
    expected_adv, expected_ret = naive_gae(segments, value, 0.9, 0.8)
    got_adv = window_major(advantages, valid, WINDOWS)
    np.testing.assert_allclose(got_adv, expected_adv, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(window_major(returns, valid, WINDOWS), expected_ret, rtol=1e-5, atol=1e-3)
    # Terminated ends bootstrap nothing: there A = r - V(s).
    ends = window_major(rollout.terminated, valid, WINDOWS)
    np.testing.assert_allclose(
        got_adv[ends], window_major(rollout.rewards - values, valid, WINDOWS)[ends], rtol=1e-6, atol=1e-4
    )


# --------------------------------------------------------------------------- AsyncPPO
def test_asyncppo_steps_rollout_counts_transitions_and_episodes():
    ppo = PPO(False, 2, 2, seed=0, device="cpu", batch_size=10**6)  # learn() waits: memory keeps all
    trainer = AsyncPPO(
        counter_factory(SPECS),
        ppo,
        num_envs=len(SPECS),
        seed=0,
        progress_bar=False,
        rollout="steps",
        num_steps=7,
    )
    windows = (7, 7, 7)
    reference = reference_rollout(SPECS, windows)  # rewards and ends do not depend on actions
    for k, (_, _finished, stored, _) in enumerate(reference):
        collected = trainer.train_round()
        assert collected.steps == stored
        assert trainer.total_steps == sum(s for _, _, s, _ in reference[: k + 1])
        assert len(ppo.memory) == trainer.total_steps
    assert trainer.episode_returns == [r for _, f, _, _ in reference for r, _ in f]
    assert trainer.episode_lengths == [n for _, f, _, _ in reference for _, n in f]
    batch = ppo.memory.take()
    for name in ("rewards", "terminated", "truncated"):
        expected = np.concatenate([expected_batch(seg)[name] for seg, *_ in reference])
        got = window_major(getattr(batch, name), batch.valid, windows)
        assert np.array_equal(got, expected), name
    expected_t = np.concatenate([expected_batch(seg)["states"][:, 0] for seg, *_ in reference])
    assert np.array_equal(window_major(batch.states[..., 0], batch.valid, windows), expected_t)
    trainer.close()


def test_asyncppo_steps_rollout_runs_to_the_step_budget():
    ppo = PPO(False, 2, 2, seed=0, device="cpu", batch_size=16, mini_batch_size=8, k_epochs=1)
    trainer = AsyncPPO(
        counter_factory(SPECS),
        ppo,
        num_envs=len(SPECS),
        steps=50,
        seed=0,
        progress_bar=False,
        rollout="steps",
        num_steps=7,
    )
    returns = trainer.run()
    reference = reference_rollout(SPECS, (7, 7))  # 24 + 23 < 50 <= 24 + 23 + 24
    assert sum(s for _, _, s, _ in reference) < 50 <= trainer.total_steps
    assert trainer.total_steps == sum(s for _, _, s, _ in reference_rollout(SPECS, (7, 7, 7)))
    assert returns is trainer.episode_returns and len(returns) == len(trainer.episode_lengths)
    assert ppo.stats["num_samples"] >= 16
    trainer.close()


@pytest.mark.parametrize("rollout", ["step", "Episodes", "", None])
def test_invalid_rollout_raises(rollout):
    ppo = PPO(False, 2, 2, seed=0, device="cpu")
    with pytest.raises(ValueError, match="rollout"):
        AsyncPPO(counter_factory(SPECS), ppo, num_envs=4, progress_bar=False, rollout=rollout)


@pytest.mark.parametrize("num_steps", [0, -3, 2.5, True])
def test_invalid_num_steps_raises(num_steps):
    ppo = PPO(False, 2, 2, seed=0, device="cpu")
    with pytest.raises(ValueError, match="num_steps"):
        AsyncPPO(
            counter_factory(SPECS), ppo, num_envs=4, progress_bar=False, rollout="steps", num_steps=num_steps
        )


# ------------------------------------------------------------- VecMemory valid rows
NUM_ENVS, T = 4, 5
# valid[t, i]; env 0: ends (terminated) at row 2, reset row 3, open at row 4;
# env 1: never ends; env 2: truncated at 0, reset, terminated at 3, reset;
# env 3: two valid open rows then invalid rows whose garbage must not be used.
VALID = np.array([[1, 1, 1, 1], [1, 1, 0, 1], [1, 1, 1, 0], [0, 1, 1, 0], [1, 1, 0, 0]], dtype=bool)
TERMINATED = np.zeros((T, NUM_ENVS), dtype=bool)
TRUNCATED = np.zeros((T, NUM_ENVS), dtype=bool)
TERMINATED[2, 0] = True
TRUNCATED[0, 2] = True
TERMINATED[3, 2] = True
TERMINATED[2, 3] = TRUNCATED[4, 3] = True  # flags on invalid rows: must be ignored


def memory_data():
    t, i = np.meshgrid(np.arange(T), np.arange(NUM_ENVS), indexing="ij")
    states = np.stack([100.0 * i + t, -t], axis=-1).astype(np.float32)  # [T, N, 2]
    next_states = states + 0.5
    actions = (t * 10 + i).astype(np.int64)
    rewards = (1000.0 * i + t).astype(np.float32)
    return states, actions, rewards, next_states


def fill(memory: VecMemory, orders) -> VecMemory:
    """Appends row t for the envs in `orders[t]` (a list of index groups, one append each)."""
    states, actions, rewards, next_states = memory_data()
    for t in range(T):
        for group in orders[t]:
            g = np.asarray(group)
            memory.append(
                g,
                states[t, g],
                actions[t, g],
                rewards[t, g],
                TERMINATED[t, g],
                TRUNCATED[t, g],
                next_states[t, g],
                valid=VALID[t, g],
            )
    return memory


def expected_trajectories() -> dict[str, np.ndarray]:
    states, actions, rewards, next_states = memory_data()
    out = {name: [] for name in FIELDS}
    for i in range(NUM_ENVS):
        rows = np.flatnonzero(VALID[:, i])
        starts_episode = True
        for k, t in enumerate(rows):
            term, trunc = bool(TERMINATED[t, i]), bool(TRUNCATED[t, i])
            out["env_ids"].append(i)
            out["episode_starts"].append(starts_episode)
            starts_episode = term or trunc
            if k == len(rows) - 1 and not (term or trunc):
                trunc = True  # closed at the end of what was collected
            out["states"].append(states[t, i])
            out["actions"].append(actions[t, i])
            out["rewards"].append(rewards[t, i])
            out["terminated"].append(term)
            out["truncated"].append(trunc)
            if term or trunc:
                out["final_states"].append(next_states[t, i])
    return {name: np.array(values) for name, values in out.items()}


SLICE = [[list(range(NUM_ENVS))]] * T
FANCY_SPLIT = [[[3, 1], [0, 2]]] * T
FANCY_REVERSED = [[[3, 2, 1, 0]]] * T
FANCY_MIXED = [[[0, 1, 2, 3]], [[2], [0, 3, 1]], [[1, 0], [3, 2]], [[3, 2, 1, 0]], [[0, 1, 2, 3]]]


@pytest.mark.parametrize(
    "orders", [SLICE, FANCY_SPLIT, FANCY_REVERSED, FANCY_MIXED], ids=["slice", "split", "reversed", "mixed"]
)
def test_vecmemory_drops_invalid_rows(orders):
    memory = fill(VecMemory(NUM_ENVS, initial_capacity=2), orders)
    assert len(memory) == int(VALID.sum()) == 14
    got = memory.trajectories()
    expected = expected_trajectories()
    assert set(got) == set(FIELDS) | {"log_probs"} and np.isnan(got["log_probs"]).all()
    for name in FIELDS:
        assert np.array_equal(got[name], expected[name]), f"{name}:\n{got[name]}\n!=\n{expected[name]}"
    rollout = memory.rollout()  # the grid itself: the rows as appended, the valid mask as given
    assert np.array_equal(rollout.valid, VALID) and np.array_equal(
        rollout.rewards[VALID], memory_data()[2][VALID]
    )
    # One final state per valid closing row; env 3's tail bootstraps from its last valid row
    # (next state of row 1), not from the garbage of its invalid rows.
    assert len(got["final_states"]) == int((got["terminated"] | got["truncated"]).sum()) == 6
    assert got["final_states"][-1].tolist() == [301.5, -0.5]
    Memory("cpu").add_trajectories(**got)  # a valid batch for the learner


def test_vecmemory_slice_and_fancy_paths_agree():
    results = [
        fill(VecMemory(NUM_ENVS, initial_capacity=2), orders).trajectories()
        for orders in (SLICE, FANCY_SPLIT, FANCY_REVERSED, FANCY_MIXED)
    ]
    for other in results[1:]:
        for name in FIELDS:
            assert np.array_equal(results[0][name], other[name]), name
            assert results[0][name].dtype == other[name].dtype, name


def test_vecmemory_all_invalid_rows_store_nothing():
    memory = VecMemory(2)
    states, actions, rewards, next_states = memory_data()
    memory.append(
        [0, 1],
        states[0, :2],
        actions[0, :2],
        rewards[0, :2],
        [True, False],
        [False, True],
        next_states[0, :2],
        valid=[False, False],
    )
    assert len(memory) == 0
    assert memory.trajectories() == {}
    memory.append(
        [0, 1],
        states[1, :2],
        actions[1, :2],
        rewards[1, :2],
        [False, False],
        [False, False],
        next_states[1, :2],
        valid=[True, False],
    )
    assert len(memory) == 1
    got = memory.trajectories()
    assert got["states"].tolist() == [[1.0, -1.0]]
    assert got["terminated"].tolist() == [False] and got["truncated"].tolist() == [True]
    assert got["final_states"].tolist() == [[1.5, -0.5]]


def test_vecmemory_valid_must_have_one_flag_per_row():
    memory = VecMemory(2)
    states, actions, rewards, next_states = memory_data()
    with pytest.raises(ValueError, match="valid"):
        memory.append(
            [0, 1],
            states[0, :2],
            actions[0, :2],
            rewards[0, :2],
            [False, False],
            [False, False],
            next_states[0, :2],
            valid=[True],
        )


def test_readme_fixed_horizon_loop_runs_and_learns(repo_root):
    readme = (repo_root / "README.md").read_text()
    section = readme.split("### A fixed-horizon loop", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict = {}
    exec(compile(code, "README fixed-horizon loop", "exec"), namespace)
    ppo = namespace["ppo"]
    # 30 updates of 32 x 64 steps: CartPole's episodes have grown far past a random policy's ~20.
    assert ppo.stats["num_samples"] >= 32 * 63
    lengths = []
    for seed in range(3):
        env = namespace["gym"].make("CartPole-v1")
        state, _ = env.reset(seed=seed)
        for t in range(500):  # noqa: B007 (read after the loop: the episode's length)
            state, _, terminated, truncated, _ = env.step(int(ppo.get_action(state, deterministic=True)))
            if terminated or truncated:
                break
        lengths.append(t + 1)
    assert np.mean(lengths) > 150, lengths
