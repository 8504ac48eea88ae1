"""The serving model thread and the training worker split the cores between their torch pools."""

from __future__ import annotations

import pytest

from bot.engine.generator import Generator, SamplingParams
from bot.engine.threads import serving_threads, split_cores


@pytest.mark.parametrize(("cpus", "split"), [(1, (1, 1)), (2, (1, 1)), (3, (2, 1)), (16, (8, 8)), (None, (1, 1))])
def test_the_cores_are_split_never_below_one_thread_each(cpus, split):
    assert split_cores(cpus) == split


def test_serving_threads_leaves_an_operators_omp_num_threads_alone():
    assert serving_threads({}, cpus=8) == 4
    assert serving_threads({"OMP_NUM_THREADS": "6"}, cpus=8) is None
    assert serving_threads({"OMP_NUM_THREADS": " "}, cpus=8) == 4


async def test_the_model_thread_runs_with_the_threads_it_was_given():
    import torch

    before = torch.get_num_threads()
    target = 1 if before != 1 else 2
    g = Generator(None, SamplingParams(), threads=target)  # type: ignore[arg-type]  # no model needed to ask torch
    try:
        assert await g._run(torch.get_num_threads) == target
    finally:
        await g.close()
        torch.set_num_threads(before)  # process-wide: give the other tests theirs back


async def test_no_threads_keeps_torchs_own_choice():
    import torch

    before = torch.get_num_threads()
    g = Generator(None, SamplingParams())  # type: ignore[arg-type]
    try:
        assert await g._run(torch.get_num_threads) == before
    finally:
        await g.close()


async def test_the_model_thread_takes_every_core_except_while_a_training_runs():
    """With `contended` wired, each generation runs on our share during a training and on torch's own count
    otherwise (the switch happens on the model thread, before the generation)."""
    import torch

    before = torch.get_num_threads()
    share = 1 if before != 1 else 2
    training = [False]
    g = Generator(None, SamplingParams(), threads=share)  # type: ignore[arg-type]
    g.contended = lambda: training[0]
    seen = []
    g._generate_sync = lambda *a: seen.append(torch.get_num_threads()) or []  # type: ignore[method-assign]
    try:
        await g.generate(1)
        training[0] = True
        await g.generate(1)
        training[0] = False
        await g.generate(1)
    finally:
        await g.close()
        torch.set_num_threads(before)
    assert seen == [before, share, before]


async def test_training_now_sees_this_process_at_once_and_others_at_most_every_interval(tmp_path):
    from bot.services import TrainingNow
    from bot.training.lock import TrainingLock

    class Runner:  # what TrainingNow reads of a TrainingRunner
        def __init__(self):
            self.lock = TrainingLock(tmp_path)

        @property
        def busy(self):
            return self.lock.is_locked()

    runner, now = Runner(), [0.0]
    probe = TrainingNow(runner, every=30.0, clock=lambda: now[0])  # type: ignore[arg-type]
    assert probe() is False
    runner.lock.acquire("test")
    assert probe() is True  # our own run: at once
    runner.lock.release()
    other = TrainingLock(tmp_path)  # stands for another process (flock is per open file)
    other.acquire("kilroy train")
    try:
        assert probe() is False  # not probed again yet
        now[0] = 31.0
        assert probe() is True
    finally:
        other.release()
