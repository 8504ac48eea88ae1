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
