"""The original project's README code, run as written.

QUICKSTART and CUSTOM_LOOP are the two ```python blocks of the original README (README.ru.md),
copied verbatim (tabs included). The tests only shrink the step counts (100000 -> 3000) and
replace the save path with a temporary directory, then execute the code with
`__name__ == '__main__'` and inspect the names it defined.
"""

from __future__ import annotations

import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import REPO_ROOT

from PPO import PPO

STEPS = 3000

QUICKSTART = """\
from PPO import PPO
from AsyncTools.AsyncPPO import AsyncPPO

import gymnasium as gym

if __name__ == '__main__':
	env = gym.make('CartPole-v1', max_episode_steps=500)

	ppo = PPO(
		is_continuous=False, 
		observ_dim=env.observation_space.shape[0],
		action_dim=env.action_space.n, 
		lr=0.001, 
		# action_scaling=2.0
		policy_clip=0.2, 
		k_epochs=11, 
		GAE_lambda=0.95, 
		batch_size=1024, 
		mini_batch_size=512, 
		gamma=0.995,
		# use_RND=True, 
		# beta=0.001
	)

	async_ppo = AsyncPPO(
		env=env,
		ppo=ppo,
		num_envs=32,
		steps=100000
	)

	async_ppo.run()

	async_ppo.ppo.save_weights(path='(insert your path)/Parallel-Reinforcement-Learning/PPO/data')
"""

CUSTOM_LOOP = """\
# Импорт
from PPO import PPO

from AsyncTools.AsyncPPO import EnvVectorizer, VecMemory
from AsyncTools import utils

import torch as t
import numpy as np

from tqdm import tqdm

import gymnasium as gym

# Основной цикл
if __name__ == '__main__':
	# Создание окружения
	env = gym.make('CartPole-v1')

	# Инициализация нейронной сети (или вашей собственной реализации)
	ppo = PPO(
		is_continuous=False, 
		observ_dim=env.observation_space.shape[0],
		action_dim=env.action_space.n, 
		lr=0.001,
		# action_scaling=1.0,
		policy_clip=0.2, 
		k_epochs=11, 
		GAE_lambda=0.95, 
		batch_size=1024, 
		mini_batch_size=512, 
		gamma=0.995,
		# use_RND=True, 
		# beta=0.001
	)

	env = EnvVectorizer(env=env, num_envs=32) # Векторизованное окружение
	buffer = VecMemory(num_envs=32) # Векторизованный буфер с одним буфером для каждого окружения

	# Цикл сбора данных с индикатором прогресса tqdm
	pbar = tqdm(
		total=100000,
		unit='step'
	)

	while pbar.n < pbar.total:
		states = env.reset()[0] # Получить состояния

		rewards_score = np.array(0.) # Сброс оценки вознаграждений
		steps_score = np.array(0) # Сброс оценки шагов

		while True:
			# Получить действия, значения состояний и логарифмические вероятности
			actions = ppo.get_action(t.from_numpy(states)) 

			# Выполнить шаги
			next_states, rewards, dones, truncates, _ = env.step(actions) 

			# Добавить данные в буфер AsyncPPO.VecMemory
			utils.buffer_append(
				buffer,

				states, 
				actions, 
				rewards, 
				dones | truncates,

				is_env_terminal=env.envs_active,
				num_envs=32
			) 

			# Отбор состояний с признаками done или truncate = True, а также обновление списка активных окружений
			states = utils.inactive_states_dropout(next_states, dones | truncates) 
			env.envs_active = utils.update_active_environments_list(env.envs_active, dones | truncates)

			rewards_score += sum(rewards) # Обновить оценку вознаграждений
			steps_score += sum(~env.envs_active) # Обновить оценку шагов

			# Если все окружения терминальны, мы завершаем эпизод
			if np.all(env.envs_active): 
				# Передача данных из нашего локального буфера в буфер ppo.memory для обучения ppo. Вы также можете использовать свою собственную функцию для передачи данных в буфер вашей собственной нейронной сети.
				utils.buffer_to_target_buffer_transfer(buffer, ppo.memory) 
				ppo.learn() # Запустить функцию обучения

				pbar.set_description(f'Mean reward {rewards_score / 32: .1f}')
				pbar.update(min(pbar.total - pbar.n, steps_score))

				break # Выйти из эпизода и начать новый
"""


def _edit(code: str, old: str, new: str) -> str:
    """Replaces `old` by `new`, insisting that `old` occurs exactly once (the copy is verbatim)."""
    assert code.count(old) == 1, f"{old!r} must occur exactly once in the README block"
    return code.replace(old, new)


def _run(code: str, name: str) -> dict:
    namespace = {"__name__": "__main__"}
    exec(compile(code, f"<README {name}>", "exec"), namespace)
    return namespace


def _initial_policy(ppo: PPO) -> PPO:
    """A PPO built like the README's, with the same seed: the weights before any training."""
    return PPO(
        is_continuous=False,
        observ_dim=4,
        action_dim=2,
        lr=0.001,
        policy_clip=0.2,
        k_epochs=11,
        GAE_lambda=0.95,
        batch_size=1024,
        mini_batch_size=512,
        gamma=0.995,
        seed=ppo.seed,
        device=ppo.device,
    )


def _weights_changed(trained: PPO) -> bool:
    fresh = _initial_policy(trained).policy.state_dict()
    return any(not torch.equal(value, fresh[key]) for key, value in trained.policy.state_dict().items())


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory):
    save_dir = tmp_path_factory.mktemp("quickstart") / "PPO" / "data"
    code = _edit(QUICKSTART, "steps=100000", f"steps={STEPS}")
    code = _edit(code, "'(insert your path)/Parallel-Reinforcement-Learning/PPO/data'", repr(str(save_dir)))
    namespace = _run(code, "quickstart")
    return namespace, save_dir


def test_quickstart_trains_and_saves(quickstart):
    namespace, save_dir = quickstart
    async_ppo, ppo = namespace["async_ppo"], namespace["ppo"]
    assert async_ppo.ppo is ppo
    assert async_ppo.num_envs == 32 and async_ppo.steps == STEPS
    assert async_ppo.total_steps >= STEPS
    # Fixed-horizon rounds: finished episodes plus the ones still running in each copy.
    unfinished = async_ppo.total_steps - sum(async_ppo.episode_lengths)
    assert 0 <= unfinished <= async_ppo.num_envs * 500
    assert len(async_ppo.episode_returns) >= 32
    # CartPole pays 1 per step: an episode's return is its length.
    np.testing.assert_array_equal(async_ppo.episode_returns, async_ppo.episode_lengths)
    assert ppo.stats and ppo.stats["num_samples"] >= 1024
    assert ppo.stats["gradient_steps"] >= 11
    assert _weights_changed(ppo)
    assert (save_dir / "Policy_weights.pth").is_file()
    assert (save_dir / "Policy_weights.pth").stat().st_size > 0
    assert not (save_dir / "RND_weights.pth").exists()


def test_custom_loop_runs_as_written():
    code = _edit(CUSTOM_LOOP, "total=100000", f"total={STEPS}")
    namespace = _run(code, "custom loop")
    pbar, ppo, buffer, env = namespace["pbar"], namespace["ppo"], namespace["buffer"], namespace["env"]
    assert pbar.n == pbar.total == STEPS
    # learn() ran: it returns None (and keeps the data) until 1024 steps are stored.
    assert ppo.stats and ppo.stats["num_samples"] >= 1024
    assert ppo.stats["gradient_steps"] >= 11
    assert _weights_changed(ppo)
    # The loop ended right after a transfer + learn: the buffer is empty, every env finished.
    assert len(buffer) == 0
    assert bool(np.all(env.envs_active))
    assert len(ppo.memory) < ppo.batch_size
    pbar.close()


_PLAY_SCRIPT = """\
import sys
import numpy as np
import torch as t
import gymnasium as gym
from PPO import PPO

path, out_file = sys.argv[1], sys.argv[2]
ppo = PPO(is_continuous=False, observ_dim=4, action_dim=2)
ppo.load_weights(path)

env = gym.make('CartPole-v1')
state, _ = env.reset(seed=0)
states, actions, sampled = [], [], []
done = False
while not done:
    states.append(state)
    sampled.append(ppo.get_action(t.from_numpy(state).unsqueeze(0)))
    action = ppo.get_action(t.from_numpy(state).unsqueeze(0), deterministic=True)
    actions.append(action)
    state, reward, terminated, truncated, _ = env.step(action[0])
    done = terminated or truncated
states = np.stack(states)
with t.no_grad():
    logits = ppo.policy.actor(t.from_numpy(states).to(ppo.device)).cpu().numpy()
np.savez(out_file, states=states, actions=np.concatenate(actions),
         sampled=np.concatenate(sampled), logits=logits)
"""


@pytest.mark.slow
def test_load_and_play_in_fresh_process(quickstart, tmp_path):
    namespace, save_dir = quickstart
    ppo = namespace["ppo"]

    # The saving process plays one seeded episode with the deterministic policy.
    env = gym.make("CartPole-v1")
    state, _ = env.reset(seed=0)
    states, actions = [], []
    done = False
    while not done:
        states.append(state)
        action = ppo.get_action(torch.from_numpy(state).unsqueeze(0), deterministic=True)
        actions.append(action)
        state, _, terminated, truncated, _ = env.step(action[0])
        done = terminated or truncated
    states, actions = np.stack(states), np.concatenate(actions)
    np.save(tmp_path / "states.npy", states)
    np.save(tmp_path / "actions.npy", actions)
    with torch.no_grad():
        logits = ppo.policy.actor(torch.from_numpy(states).to(ppo.device)).cpu().numpy()

    out_file = tmp_path / "played.npz"
    result = subprocess.run(
        [sys.executable, "-c", _PLAY_SCRIPT, str(save_dir), str(out_file)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    played = np.load(out_file)
    saved_states, saved_actions = np.load(tmp_path / "states.npy"), np.load(tmp_path / "actions.npy")
    # Same weights -> same deterministic actions -> the very same episode.
    np.testing.assert_array_equal(played["states"], saved_states)
    np.testing.assert_array_equal(played["actions"], saved_actions)
    assert played["actions"].dtype == np.int64
    np.testing.assert_allclose(played["logits"], logits, rtol=1e-5, atol=1e-6)
    # The README's call (sampling) gives one valid action per state.
    assert played["sampled"].shape == (len(saved_states),)
    assert set(np.unique(played["sampled"])) <= {0, 1}


@pytest.mark.slow
def test_the_quickstart_as_written_plays_well_in_unseeded_runs(tmp_path):
    """The quickstart verbatim (100k steps, no seed): in each of 3 runs the saved policy, loaded
    back, plays at least 475 on average over 10 deterministic episodes."""
    from AsyncTools.evaluation import evaluate

    scores = []
    for run in range(3):
        save_dir = tmp_path / f"run{run}"
        code = _edit(
            QUICKSTART, "'(insert your path)/Parallel-Reinforcement-Learning/PPO/data'", repr(str(save_dir))
        )
        _run(code, f"quickstart run {run}")
        played = evaluate(
            PPO.load(save_dir, device="cpu"), gym.make("CartPole-v1", max_episode_steps=500), episodes=10
        )
        scores.append(float(np.mean(played)))
    assert min(scores) >= 475, f"deterministic returns of the saved policies: {scores}"
