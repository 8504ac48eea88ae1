"""`kilroy` console script: the composition root. Parses arguments, builds Settings and services, runs a command.

Heavy imports (torch, transformers, discord) happen inside the subcommands, so `kilroy --help` is instant.
Exit codes: 0 ok, 1 runtime failure, 2 bad input or configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from bot.config import ConfigError, Settings, load_settings
from bot.logs import setup_logging

if TYPE_CHECKING:
    from bot.adapters import AdapterStore
    from bot.simulation import AudienceSpec

log = logging.getLogger("kilroy")


class ProgressBar:
    """A progress bar on stderr (tqdm), redrawn in place on a terminal; off when stderr is not a terminal."""

    def __init__(self, label: str, stream: Any = None) -> None:
        from tqdm import tqdm

        self._bar = tqdm(desc=label, file=stream or sys.stderr, disable=None, unit="step", dynamic_ncols=True)

    def update(self, done: int, total: int, suffix: str = "") -> None:
        """Draw `done` of `total`."""
        if self._bar.total != total:
            self._bar.total = total
        self._bar.n = done
        self._bar.set_postfix_str(suffix, refresh=False)
        self._bar.refresh()

    def close(self) -> None:
        """End the line."""
        self._bar.close()


# --- subcommands -----------------------------------------------------------------------------------------------------


def cmd_run(settings: Settings, args: argparse.Namespace) -> int:
    """Run the Discord bot."""
    if not settings.discord.token:
        print(
            "error: DISCORD_TOKEN is not set.\n"
            "  Create an application and bot at https://discord.com/developers/applications, copy the bot token,\n"
            "  and put DISCORD_TOKEN=... in .env (see README, 'Run it on your server').\n"
            "  To see Kilroy learn without Discord, run: kilroy simulate",
            file=sys.stderr,
        )
        return 2
    from bot.app import SYNC_MARKER, run_bot

    if args.sync:
        (settings.data_dir / SYNC_MARKER).unlink(missing_ok=True)
    return asyncio.run(run_bot(settings))


def _simulate_ab(settings: Settings, args: argparse.Namespace, audience: AudienceSpec) -> int:
    """`kilroy simulate --ab`: run, print the nights and the note, write --json and --plot."""
    from bot.simulation_ab import simulate_ab

    workdir = Path(args.workdir) if args.workdir else settings.data_dir / "simulate-ab"
    started = time.perf_counter()

    def on_event(e: dict[str, Any]) -> None:
        if e.get("event") == "night" and e.get("stage") == "posting":
            print(f"night {e['night']}: posting (serving {e['adapter']})", file=sys.stderr)

    out = asyncio.run(
        simulate_ab(
            settings,
            audience,
            nights=args.nights,
            posts_per_night=args.posts_per_night,
            seed=args.seed,
            workdir=workdir,
            on_event=on_event,
            eval_samples=args.eval_samples,
        )
    )
    out["seconds"] = time.perf_counter() - started
    print("\nnight  mean score  expected  adapter   trial")
    for n in out["nights"]:
        t = n["trial"]
        trial = f"#{t['id']} c{t['arms']['candidate']}/i{t['arms']['incumbent']} -> {t['decision'] or '…'}" if t else ""
        if n.get("trial_started"):
            trial += f" (starts #{n['trial_started']['id']}: {n['trial_started']['candidate']})"
        print(f"{n['night']:>5}  {n['mean_score']:>10.2f}  {n['expected_score']:>8.2f}  {n['adapter']:<8}  {trial}")
    print(out["note"])
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    if args.plot:
        from bot.plotting import plot_ab_nights

        plot_ab_nights(out, Path(args.plot))
    return 0


def cmd_backup(settings: Settings, args: argparse.Namespace) -> int:
    """Write a consistent snapshot (database, adapters, pointer, manifest) into a new folder."""
    from bot.backup import BackupError, backup

    try:
        result = backup(settings, Path(args.path))
    except BackupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        f"backup written to {result.path}: {result.files} files, {result.bytes / 1e6:.1f} MB, "
        f"adapters {', '.join(result.adapters) or 'none'} ({result.seconds:.1f}s)"
    )
    return 0


def cmd_restore(settings: Settings, args: argparse.Namespace) -> int:
    """Verify a backup and put it in place; refuses while a bot or a training runs."""
    from bot.backup import BackupError, restore, verify

    try:
        if args.check:
            manifest = verify(Path(args.path))
            print(f"{args.path}: manifest and integrity ok ({manifest.get('posts', 0)} posts, {manifest['created']})")
            return 0
        manifest = restore(settings, Path(args.path))
    except BackupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        f"restored {args.path} ({manifest.get('posts', 0)} posts, serving {manifest.get('current')}); "
        f"moved aside: {', '.join(manifest['moved_aside']) or 'nothing'}"
    )
    return 0


def cmd_simulate(settings: Settings, args: argparse.Namespace) -> int:
    """Run the offline nights loop against a simulated audience, once per seed."""
    from bot.simulation import AudienceError, AudienceSpec, builtin_audiences, mean_ci, simulate, summarise

    try:
        if args.audience_file:
            audience = AudienceSpec.from_file(Path(args.audience_file))
        else:
            audiences = builtin_audiences()
            if args.audience not in audiences:
                print(f"error: unknown audience {args.audience!r}; built in: {', '.join(audiences)}", file=sys.stderr)
                return 2
            audience = audiences[args.audience]
    except AudienceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.nights < 1 or args.posts_per_night < 2 or args.seeds < 1 or args.eval_samples < 2:
        print(
            "error: --nights and --seeds must be at least 1, --posts-per-night and --eval-samples at least 2",
            file=sys.stderr,
        )
        return 2
    if args.ab:  # live A/B trials in the simulated community (bot/simulation_ab.py)
        return _simulate_ab(settings, args, audience)
    workdir = Path(args.workdir) if args.workdir else settings.data_dir / "simulate"
    bar: ProgressBar | None = None
    started = time.perf_counter()

    def on_event(e: dict[str, Any]) -> None:
        nonlocal bar
        kind = e.get("event")
        if kind == "night" and e.get("stage") == "posting":
            print(f"night {e['night']}: posting with adapter {e['adapter']}", file=sys.stderr)
        elif kind == "progress" and e.get("stage") == "train":
            if bar is None:
                bar = ProgressBar(f"night {e['night']}: training")
            bar.update(e["step"], e["of"], f"loss {e['loss']:+.3f}")
        elif kind == "night_done":
            if bar is not None:
                bar.close()
                bar = None
            gate = "" if e["promoted"] is None else (" -> promoted" if e["promoted"] else f" -> kept out: {e['gate']}")
            print(
                f"night {e['night']}: mean score {e['mean_score']:.2f}, expected {e['expected_score']:.3f}, "
                f"KL {e['kl']:.3f}{gate}",
                file=sys.stderr,
            )

    seeds = list(range(args.seed, args.seed + args.seeds))
    results = []
    for seed in seeds:
        print(
            f"simulating {args.nights} nights x {args.posts_per_night} posts for audience {audience.name!r} "
            f"(seed {seed}, model {settings.model.name})",
            file=sys.stderr,
        )
        results.append(
            asyncio.run(
                simulate(
                    settings,
                    audience,
                    nights=args.nights,
                    posts_per_night=args.posts_per_night,
                    seed=seed,
                    workdir=workdir if len(seeds) == 1 else workdir / f"seed-{seed}",
                    on_event=on_event,
                    isolated=args.isolated,
                    eval_samples=args.eval_samples,
                )
            )
        )
    out = results[0].as_json() if len(results) == 1 else {}
    out.update(summarise(results))
    out["seconds"] = time.perf_counter() - started
    several = len(seeds) > 1
    what = "mean over seeds [95% CI]" if several else "one seed (--seeds 5 gives a 95% interval over seeds)"
    print(f"\naudience {audience.name}, seeds {seeds[0]}..{seeds[-1]}: {what}")
    print("night  expected score          sampled  KL     distinct-2  repeat3  tokens  promoted")
    for i in range(args.nights):
        nights = [r.nights[i] for r in results]
        m, lo, hi = mean_ci([n.expected_score for n in nights])
        promoted = sum(bool(n.promoted) for n in nights)

        def avg(key: str, nights: list[Any] = nights) -> float:
            return sum(getattr(n, key) for n in nights) / len(nights)

        band = f"[{lo:6.3f}, {hi:6.3f}]" if several else " " * 16
        print(
            f"{i:>5}  {m:6.3f} {band}  {avg('mean_score'):7.2f}  {avg('kl'):.3f}  "
            f"{avg('distinct2'):10.2f}  {avg('repeat3'):7.2f}  {avg('mean_tokens'):6.1f}  "
            f"{'-' if i == args.nights - 1 else f'{promoted}/{len(nights)}'}"
        )
    lo, hi = out["lift_ci"]
    # one seed has no spread to show: a zero-width interval would claim a certainty the run does not have
    spread = f"95% CI [{lo:.2f}, {hi:.2f}] over {len(seeds)} seeds" if several else "one seed, no interval"
    print(
        f"\nlift (final / night-0 expected score): {out['lift']:.2f}x, {spread}; "
        f"sampled-score lift {out['lift_sampled']:.2f}x; {out['seconds']:.0f}s"
    )
    print("samples from the last night:")
    for text in results[-1].nights[-1].samples[:5]:
        print(f"  • {text}")
    if args.json:
        _write_atomic(Path(args.json), json.dumps(out, indent=2, ensure_ascii=False))
    if args.plot:
        from bot.plotting import plot_learning_curve

        plot_learning_curve(results, Path(args.plot))
    return 0


def cmd_train(settings: Settings, args: argparse.Namespace) -> int:
    """One training run over the database, through the same lock and promotion sequence as the bot."""
    from bot.adapters import AdapterStore
    from bot.storage import Storage
    from bot.training.runner import TrainingBusy, TrainingFailed, TrainingRunner

    bar = ProgressBar("training")

    def on_progress(e: dict[str, Any]) -> None:
        if e.get("event") == "progress" and e.get("stage") == "train":
            bar.update(e["step"], e["of"], f"loss {e['loss']:+.3f}")
        elif e.get("event") == "progress" and e.get("stage") == "evaluate":
            bar.close()
            print("evaluating the candidate...", file=sys.stderr)

    async def go() -> int:
        async with Storage.open(settings.db_path) as storage:
            # no live model here: a promoted adapter's files are checked and the pointer moves; a bot started
            # later serves it (a running bot holds the training lock, so this cannot race it)
            # with A/B trials on, a gate-passing candidate waits for the bot, whose next start puts it on trial
            runner = TrainingRunner(
                settings,
                storage,
                AdapterStore(settings.adapters_dir),
                in_process=True,
                defer_to_trial=settings.trials.share > 0,
            )
            try:
                result = await runner.run("cli", on_progress)
            except TrainingBusy as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 1
            except TrainingFailed as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 1
        if args.json:
            print(json.dumps(result.as_event(), indent=2))
        elif result.status == "skipped":
            print(f"nothing to train: {result.reason}")
        else:
            verdict = (
                "promoted (now active)"
                if result.promoted
                else "passed the gate; its A/B trial starts with the bot"
                if result.accepted and settings.trials.share > 0
                else "kept but NOT promoted"
            )
            print(f"adapter {result.adapter} (parent {result.parent}): {verdict}: {result.reason}")
            for key, value in sorted(result.metrics.items()):
                print(f"  {key:<18} {value:.4f}")
        return 0

    return asyncio.run(go())


def cmd_generate(settings: Settings, args: argparse.Namespace) -> int:
    """Print samples from the current or a named adapter."""
    from bot.services import open_services

    if args.n < 1:
        print("error: -n must be at least 1", file=sys.stderr)
        return 2

    async def go() -> list[Any]:
        async with open_services(settings, adapter=args.adapter) as services:
            prompt = args.prompt if args.prompt is not None else settings.generation.prompt
            return await services.generator.generate(args.n, prompt=prompt, seed=args.seed)

    samples = asyncio.run(go())
    if args.json:
        print(
            json.dumps(
                {"samples": [{"text": s.text, "adapter": s.adapter, "tokens": s.tokens} for s in samples]},
                ensure_ascii=False,
            )
        )
    else:
        for s in samples:
            print(s.text)
    return 0


def cmd_adapters(settings: Settings, args: argparse.Namespace) -> int:
    """The adapter store from the shell."""
    from bot.adapters import AdapterStore

    store = AdapterStore(settings.adapters_dir)
    if args.action == "list":
        for info in store.list():
            created = time.strftime("%Y-%m-%d %H:%M", time.gmtime(info.created_at)) if info.created_at else "-"
            m = info.metrics
            metrics = f"kl={m['kl']:.3f} distinct2={m['distinct2']:.2f}" if "kl" in m else ""
            print(
                f"{'*' if info.active else ' '} {info.name:<12} {created:<17} parent={info.parent or '-':<8} {metrics}"
            )
    elif args.action == "show":
        info = store.info(args.name)
        print(json.dumps({"name": info.name, "active": info.active, **info.meta}, indent=2, ensure_ascii=False))
    elif args.action == "use":
        store.set_current(args.name)
        print(f"active adapter: {store.current()} (a running bot picks it up with /adapter use or on restart)")
    elif args.action == "rollback":
        print(f"rolled back; active adapter: {store.rollback()}")
    elif args.action == "trial":
        return asyncio.run(_adapters_trial(settings, store, args.trial_action))
    return 0


async def _adapters_trial(settings: Settings, store: AdapterStore, action: str) -> int:
    """`kilroy adapters trial [show|stop|promote]`: the A/B trial from the shell (recorded as decided by 'cli')."""
    from bot.storage import Storage
    from bot.trial_service import evaluate_trial

    async with Storage.open(settings.db_path) as storage:
        trial = await storage.active_trial()
        if action == "show":
            shown = trial or next(iter(await storage.trials(limit=1)), None)
            if shown is None:
                print("no A/B trial has run yet")
                return 0
            print((await evaluate_trial(storage, settings, shown, now=time.time())).text())
            return 0
        if trial is None:
            print("error: no A/B trial is running", file=sys.stderr)
            return 2
        if action == "promote":
            store.set_current(trial.candidate)  # pointer first, then the trial row: a crash between re-decides
            await storage.end_trial(
                trial.id, verdict="promoted_by_hand", decided_by="cli", summary="promoted by hand", at=time.time()
            )
            if trial.run_id is not None:
                await storage.set_run_stage(trial.run_id, "promoted")
            print(
                f"trial #{trial.id}: {trial.candidate} promoted (a running bot serves it after /adapter use "
                "or a restart)"
            )
        else:
            await storage.end_trial(
                trial.id, verdict="stopped", decided_by="cli", summary="stopped by hand", at=time.time()
            )
            if trial.run_id is not None:
                await storage.set_run_stage(trial.run_id, "kept")
            print(f"trial #{trial.id} stopped; {trial.incumbent} keeps serving")
    return 0


def cmd_story(settings: Settings, args: argparse.Namespace) -> int:
    """Story mode in the terminal: human lines on stdin, one `machine_director: ...` line each on stdout."""
    return asyncio.run(terminal_story(settings, opening=args.opening, stdin=sys.stdin, stdout=sys.stdout))


async def terminal_story(settings: Settings, *, opening: str | None, stdin: TextIO, stdout: TextIO) -> int:
    """The terminal loop, on the same StoryService as `/story`; prompts, logs and errors go to stderr."""
    import dataclasses

    from bot.services import open_services
    from bot.story import MACHINE
    from bot.story_session import StoryError

    # the terminal story lives in memory: it is play, not data for the server's training
    settings = settings.replace(db_path=Path(":memory:"), story=dataclasses.replace(settings.story, cooldown_seconds=0))
    interactive = stdin.isatty()
    async with open_services(settings) as services:
        story = await services.stories.start(0, opening=opening)
        print(f"{story.instruction}\n{story.opening}", file=sys.stderr)
        while True:
            if interactive:
                print("human_director: ", end="", file=sys.stderr, flush=True)
            raw = stdin.readline()
            if not raw:
                break
            if not raw.strip():
                continue
            try:
                turn = await services.stories.take_turn(0, None, raw)
            except StoryError as exc:
                print(f"error: {exc}", file=sys.stderr)
                continue
            print(f"{MACHINE}: {turn.text}", file=stdout, flush=True)
    return 0


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


class _Help(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Show each option's default (when it has a value), and keep the descriptions' line breaks."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False or "(default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def version() -> str:
    """The installed package's version."""
    from importlib.metadata import PackageNotFoundError, version as dist_version

    try:
        return dist_version("kilroy")
    except PackageNotFoundError:  # running from a source tree that was not installed
        return "0.1.0+source"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand; every option has a help text and shows its default."""
    p = argparse.ArgumentParser(
        prog="kilroy",
        description="A Discord bot that learns what its community engages with.\n"
        "Settings come from the environment and an env file (every variable: .env.example).",
        formatter_class=_Help,
    )
    p.add_argument("--version", action="version", version=f"kilroy {version()}")
    p.add_argument("--env-file", default=".env", help="read settings from this file too (the environment wins)")
    p.add_argument("--model", default=None, help="override KILROY_MODEL: gpt2, a local folder, or tiny (offline)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, summary: str, description: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=summary, description=description, formatter_class=_Help)

    r = command(
        "run",
        "run the Discord bot (needs DISCORD_TOKEN)",
        "Run the Discord bot: scheduled posts, engagement, stories, nightly training. With KILROY_HTTP_PORT set it\n"
        "also serves /healthz, /metrics and the dashboard. Stops cleanly on Ctrl-C or SIGTERM.",
    )
    r.add_argument("--sync", action="store_true", help="sync slash commands even if they look unchanged")

    s = command(
        "simulate",
        "offline demo: nights of posting to a simulated audience, with training",
        "The offline demo: each night the bot posts to a simulated audience, scores the posts and trains a new\n"
        "adapter. Needs no Discord and no network (the tiny model is built on first use).",
    )
    s.add_argument("--nights", type=int, default=8, help="nights to simulate (at least 1)")
    s.add_argument("--posts-per-night", type=int, default=64, help="posts per night (at least 2)")
    s.add_argument("--seed", type=int, default=0, help="the first seed (of the audience and the sampling)")
    s.add_argument("--seeds", type=int, default=1, help="run this many seeds (seed, seed+1, ...) and report a 95%% CI")
    s.add_argument("--eval-samples", type=int, default=256, help="fresh samples a night scored by expected engagement")
    s.add_argument(
        "--audience",
        default="realistic",
        help="a built-in audience: realistic, cat_people, dragon_fans, foodies, indifferent, stargazers",
    )
    s.add_argument(
        "--audience-file",
        default=None,
        help='a JSON audience spec: {"members": int, "reaction_rate": float, "likes": {"word": weight}, '
        '"dislikes": {"word": weight}}, optionally taste_spread, fatigue, fatigue_window; '
        "examples in bot/audiences/",
    )
    s.add_argument("--json", default=None, help="write machine-readable results to this file")
    s.add_argument("--plot", default=None, help="write a PNG learning curve to this file")
    s.add_argument(
        "--workdir", default=None, help="where the simulation's database and adapters go (default: <data dir>/simulate)"
    )
    s.add_argument("--isolated", action="store_true", help="train each night in the worker process, as the bot does")
    s.add_argument(
        "--ab", action="store_true", help="live A/B trials: candidates go on trial, posts split between arms"
    )

    t = command(
        "train",
        "one training run over the database; promotes only if the gate passes",
        "One training run over the settled, untrained posts in the database, through the same lock, gate and\n"
        "promotion sequence as the bot's nightly run.",
    )
    t.add_argument("--json", action="store_true", help="print the result as JSON")

    g = command(
        "generate",
        "print samples from the current or a named adapter",
        "Print samples from the serving adapter (or a named one).",
    )
    g.add_argument("-n", type=int, default=1, help="how many samples")
    g.add_argument("--adapter", default=None, help="an adapter version to sample from (default: the serving one)")
    g.add_argument("--prompt", default=None, help="text to continue (default: KILROY_POST_PROMPT)")
    g.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    g.add_argument("--json", action="store_true", help='print {"samples": [{"text", "adapter", "tokens"}]}')

    a = command(
        "adapters",
        "list, show, use or roll back LoRA adapters; show, stop or promote the A/B trial",
        "The adapter store from the shell. A running bot picks a change up with /adapter use or at restart.",
    )
    asub = a.add_subparsers(dest="action", required=True, metavar="ACTION", help="what to do")

    def action(name: str, summary: str, description: str) -> argparse.ArgumentParser:
        return asub.add_parser(name, help=summary, description=description, formatter_class=_Help)

    action(
        "list",
        "every version, the serving one starred",
        "List every adapter version with its gate verdict and time; the serving one is starred.",
    )
    action(
        "show", "one version's metadata as JSON", "Print one adapter version's metadata (meta.json) as JSON."
    ).add_argument("name", help="a version name, e.g. v0003")
    action(
        "use",
        "make a version the serving one",
        "Point the adapter store at a version (or base). A running bot picks it up with /adapter use or at restart.",
    ).add_argument("name", help="a version name, e.g. v0003, or base")
    action("rollback", "serve the previous version again", "Point the adapter store back at the version served before.")
    tr = action(
        "trial",
        "the A/B trial: show it, stop it (keep the incumbent) or promote by hand",
        "Show the running A/B trial (arms, settled posts, estimate), stop it keeping the incumbent, or promote the\n"
        "candidate by hand.",
    )
    tr.add_argument("trial_action", nargs="?", choices=("show", "stop", "promote"), default="show", help="what to do")

    st = command(
        "story",
        "story mode in the terminal (lines on stdin, answers on stdout)",
        "Story mode in the terminal: each line read from standard input gets one machine_director line on\n"
        "standard output; prompts and logs go to standard error, so it pipes cleanly.",
    )
    st.add_argument("--opening", default=None, help="the story's opening (default: KILROY_STORY_OPENING)")

    b = command(
        "backup",
        "write a consistent snapshot of the database, adapters and pointer",
        "Write a backup into a new folder while the bot runs: the database (SQLite online backup), the adapter\n"
        "versions the pointer's history names, STATE.json, and manifest.json with a SHA-256 per file.",
    )
    b.add_argument("path", help="the new backup folder (must not exist or be empty)")

    rs = command(
        "restore",
        "verify a backup and put it in place (the bot must be stopped)",
        "Verify a backup (manifest checksums, PRAGMA integrity_check), then restore it. Refuses while a bot or a\n"
        "training holds its lock. Replaced files are moved aside (*.replaced-<time>), never deleted.",
    )
    rs.add_argument("path", help="a folder written by `kilroy backup`")
    rs.add_argument("--check", action="store_true", help="only verify the backup; change nothing")

    d = command(
        "doctor",
        "check the setup: settings, token, database, adapters, model cache, disk, torch, HTTP port",
        "Check the setup, one line per check with the fix for each failure. Exit status 0 only when all pass.",
    )
    d.add_argument(
        "--json", action="store_true", help='print {"ok": bool, "checks": [{"name", "ok", "detail", "fix"}]}'
    )
    return p


COMMANDS = {
    "run": cmd_run,
    "simulate": cmd_simulate,
    "train": cmd_train,
    "generate": cmd_generate,
    "adapters": cmd_adapters,
    "story": cmd_story,
    "backup": cmd_backup,
    "restore": cmd_restore,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `kilroy` console script."""
    args = build_parser().parse_args(argv)
    overrides = {}
    if args.model:
        overrides["KILROY_MODEL"] = args.model
    elif args.command in ("simulate", "story") and "KILROY_MODEL" not in os.environ:
        overrides["KILROY_MODEL"] = "tiny"  # the offline commands default to the offline model
    if args.command == "doctor":  # it reports bad settings as a failed check instead of stopping at them
        from bot import doctor

        return doctor.main(args.env_file, overrides, json_output=args.json)
    try:
        settings = load_settings(args.env_file, overrides)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level, settings.ops.log_format)
    from bot.adapters import AdapterError
    from bot.simulation import AudienceError

    try:
        return COMMANDS[args.command](settings, args)
    except (AdapterError, AudienceError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        from bot.engine.model import ModelLoadError

        if isinstance(exc, ModelLoadError):
            print(f"error: {exc}", file=sys.stderr)
            return 2
        log.exception("%s failed", args.command)
        return 1


if __name__ == "__main__":
    sys.exit(main())
