"""`python -m bot.training.worker`: one training run in its own process, JSON-lines events on stdout.

The parent (`TrainingRunner`) holds the training lock, writes its exact Settings as JSON on our stdin, and runs
the promotion sequence once we exit: here we only train, commit the candidate and record the gate's verdict.
A crash or an out-of-memory error here kills only this process; the bot keeps serving its adapter.
Events: `bot.training.result.Progress`, one JSON object a line through its codec (`settings`, `start`, `progress`...,
then `skipped`, `done` or `error`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys

from bot.training.result import Progress


def _emit(event: Progress) -> None:
    sys.stdout.write(json.dumps(event.to_json(), default=str) + "\n")
    sys.stdout.flush()


def share_cores() -> int:
    """Train beside the serving bot without starving it: a lower CPU priority and half the cores for torch.

    Two full-size torch thread pools on the same cores oversubscribe them: a post generated during a training took
    6x its idle time. The serving side takes the other half (bot/engine/threads.py). Returns the torch threads used.
    """
    import os

    from bot.engine.threads import available_cpus, set_torch_threads, split_cores

    with contextlib.suppress(OSError):
        os.nice(10)
    threads = split_cores(available_cpus())[1]
    set_torch_threads(threads)
    return threads


async def _main(reason: str, now: float | None) -> int:
    import os

    from bot.adapters.store import AdapterStore
    from bot.config.env import Secret
    from bot.config.settings import Settings
    from bot.logs import setup_logging
    from bot.storage import Storage
    from bot.training.nightly import run_training

    settings = Settings.from_json(json.loads(sys.stdin.read()))
    if os.environ.get("KILROY_DATABASE_URL"):  # the parent's PostgreSQL URL (runner.database_env): not on stdin
        settings = settings.replace(database_url=Secret(os.environ["KILROY_DATABASE_URL"]))
    setup_logging(settings.log_level, settings.ops.log_format)
    share_cores()
    _emit(Progress("settings", settings=settings.to_json()))
    async with Storage.open(settings.database) as storage:
        result = await run_training(
            settings, storage, AdapterStore(settings.adapters_dir), now=now, reason=reason, on_progress=_emit
        )
    _emit(Progress("done", result=result))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run one training and report; exit 1 on failure."""
    parser = argparse.ArgumentParser(
        prog="python -m bot.training.worker",
        description="One Kilroy training run; reads its settings as JSON on stdin (started by the bot).",
    )
    parser.add_argument("--reason", default="manual", help="why this run was started (recorded)")
    parser.add_argument("--now", type=float, help="the clock for settling posts (the simulation's time)")
    args = parser.parse_args(argv)
    try:
        return asyncio.run(_main(args.reason, args.now))
    except Exception as exc:  # report, then fail: the parent turns this into a message
        _emit(Progress("error", message=f"{type(exc).__name__}: {exc}"))
        raise


if __name__ == "__main__":
    sys.exit(main())
