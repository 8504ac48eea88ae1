"""How the serving model thread and the training worker split the CPU cores between their torch thread pools.

A training in its worker process (`bot/training/worker.py`) and the bot's model thread both run torch on the same
cores. Left alone, each sizes its intra-op pool to every core: twice as many busy threads as cores, and a post
generated during a training took 6x its idle time (OpenMP threads waiting on preempted siblings). So the cores are
split while a training runs: the worker takes half (at least one) at a lower priority (nice 10), the serving
thread the rest (at least one). On a 2-core machine each gets one; on 16, eight each. When no training runs, the
serving thread goes back to torch's own count (every core): a 124M-shape post on 2 cores took 1.5 s on one thread
against 0.95 s on two, so a static split would cost every idle post a third of its speed.

`torch.set_num_threads` is process-wide in effect (it sets torch's default for every thread that starts using
torch afterwards, and the calling thread's own pool). The bot's only heavy torch thread is the model thread, and
the count is set there: when it starts, and before a generation whenever "is a training running?" changed its
answer (`Generator.contended`). On a GPU these CPU pools hardly matter. An operator who wants another count sets
OMP_NUM_THREADS, which is then left alone (the worker still takes its half: it sets its own count).
"""

from __future__ import annotations

import os
from collections.abc import Mapping


def split_cores(cpus: int | None) -> tuple[int, int]:
    """(serving, training) torch threads for `cpus` cores: training half (at least 1), serving the rest (at least 1)."""
    cpus = max(1, cpus or 1)
    training = max(1, cpus // 2)
    return max(1, cpus - training), training


def available_cpus() -> int:
    """The cores this process may run on (its CPU affinity, as in a container's cpuset), else the machine's."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def serving_threads(env: Mapping[str, str] | None = None, cpus: int | None = None) -> int | None:
    """The model thread's torch threads beside a training worker; None when OMP_NUM_THREADS already decides."""
    env = os.environ if env is None else env
    if env.get("OMP_NUM_THREADS", "").strip():
        return None
    return split_cores(available_cpus() if cpus is None else cpus)[0]


def set_torch_threads(threads: int | None) -> None:
    """torch.set_num_threads(threads), unless None (keep torch's own choice)."""
    if threads is None:
        return
    import torch

    torch.set_num_threads(threads)
