"""EpisodeCounter and merge_rounds (AsyncTools/episodes.py): what every loop, evaluation and
Ray count episodes with."""

from __future__ import annotations

import numpy as np

from AsyncTools.episodes import EpisodeCounter, EpisodeRound, merge_rounds


def test_counter_adds_the_copies_given_and_ends_them_in_the_order_given():
    counter = EpisodeCounter(4)
    counter.add(np.array([1.0, 2.0, 3.0, 4.0], np.float32))
    counter.add(np.array([10.0, 30.0], np.float32), np.array([0, 2]))  # indices
    counter.add(np.array([0.5], np.float32), np.array([False, True, False, False]))  # a mask
    returns, lengths = counter.end(np.array([2, 1]))
    assert returns.tolist() == [33.0, 2.5] and lengths.tolist() == [2, 2]
    assert returns.dtype == np.float64 and lengths.dtype == np.int64
    assert counter.returns.tolist() == [11.0, 0.0, 0.0, 4.0]  # the ended copies start from 0
    assert counter.lengths.tolist() == [2, 0, 0, 1]
    returns[:] = -1.0  # what end hands back is a copy
    assert counter.returns.tolist() == [11.0, 0.0, 0.0, 4.0]
    returns, lengths = counter.end(np.array([True, False, False, True]))
    assert returns.tolist() == [11.0, 4.0] and lengths.tolist() == [2, 1]


def test_counter_sums_in_float64_whatever_the_rewards_dtype():
    rewards = np.random.default_rng(0).normal(size=(100, 2)).astype(np.float32) * 1e3
    counter = EpisodeCounter(2)
    for row in rewards:
        counter.add(row)
    expected = [0.0, 0.0]
    for row in rewards:
        expected = [e + float(r) for e, r in zip(expected, row, strict=True)]
    assert counter.end(np.arange(2))[0].tolist() == expected


def test_merge_rounds_joins_in_order_with_fixed_dtypes():
    rounds = [
        EpisodeRound(3, np.array([1.5, 2.0]), np.array([3, 4]), np.array([7.0])),
        EpisodeRound(0, np.zeros(0), np.zeros(0, np.int64), np.zeros(0)),
        EpisodeRound(5, np.array([0.25], np.float32), np.array([2], np.int32)),
    ]
    merged = merge_rounds(rounds)
    assert merged.steps == 8
    assert merged.episode_returns.tolist() == [1.5, 2.0, 0.25]
    assert merged.episode_lengths.tolist() == [3, 4, 2]
    assert merged.game_returns.tolist() == [7.0]
    assert (merged.episode_returns.dtype, merged.episode_lengths.dtype, merged.game_returns.dtype) == (
        np.float64,
        np.int64,
        np.float64,
    )
    empty = merge_rounds([])
    assert empty.steps == 0 and len(empty.episode_returns) == len(empty.game_returns) == 0
    assert empty.episode_lengths.dtype == np.int64
