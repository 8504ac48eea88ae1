"""`kilroy adapters`: a lineage's adapter store and its A/B trial from the shell.

`--community g123` picks the lineage of server 123 (default: the commons, the lineage that serves servers without
one of their own); `list` also says what serves that community now (its own pointer, else the commons').
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time

from bot.cli.common import CommandFactory
from bot.config.settings import Settings

log = logging.getLogger("kilroy")


def cmd_adapters(settings: Settings, args: argparse.Namespace) -> int:
    """The adapter store from the shell."""
    from bot.services import adapter_store

    community = args.community
    store = adapter_store(settings, community)
    if args.action == "list":
        from bot.adapters.lineages import Lineages

        print(f"{community}: served by {Lineages(settings.adapters_dir).serving(community)}")
        for info in store.list():
            created = time.strftime("%Y-%m-%d %H:%M", time.gmtime(info.created_at)) if info.created_at else "-"
            m = info.metrics
            metrics = f"kl={m['kl']:.3f} distinct2={m['distinct2']:.2f}" if "kl" in m else ""
            accepted = info.meta.get("accepted")  # the gate's verdict; '*' marks the one serving
            gate = "" if accepted is None else ("gate=accepted " if accepted else "gate=refused  ")
            print(
                f"{'*' if info.active else ' '} {info.name:<12} {created:<17} parent={info.parent or '-':<8} "
                f"{gate}{metrics}"
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
        return asyncio.run(_adapters_trial(settings, args.trial_action, community))
    return 0


async def _adapters_trial(settings: Settings, action: str, community: str) -> int:
    """`kilroy adapters trial [show|stop|promote]`: a community's A/B trial from the shell (decided by 'cli')."""
    from bot.domain.community import ref
    from bot.domain.records import BASE
    from bot.services import open_shell_services
    from bot.trials.service import evaluate_trial

    async with open_shell_services(settings) as services:
        storage = services.storage
        store = services.communities.lineages.store(community)

        def point_at(reference: str) -> None:
            # a trial names adapters by reference; another lineage's (the commons) is served by pointing at base
            owner, _, version = reference.rpartition("/")
            store.set_current(version if owner in ("", community) else BASE)

        trial = await storage.active_trial(community)
        if action == "show":
            shown = trial or next(iter(await storage.trials(limit=1, community=community)), None)
            if shown is None:
                print("no A/B trial has run yet")
                return 0
            print((await evaluate_trial(storage, settings, shown, now=time.time())).text())
            return 0
        if trial is None:
            print("error: no A/B trial is running", file=sys.stderr)
            return 2
        if action == "promote":
            point_at(trial.candidate)  # pointer first, then the trial row: a crash between re-decides
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
            if ref(community, store.current()) == trial.candidate:
                # a guard: its candidate already serves; stopping rolls back to the anchor (pointer first, as promote)
                point_at(trial.incumbent)
            await storage.end_trial(
                trial.id, verdict="stopped", decided_by="cli", summary="stopped by hand", at=time.time()
            )
            if trial.run_id is not None:
                await storage.set_run_stage(trial.run_id, "kept")
            print(f"trial #{trial.id} stopped; {trial.incumbent} keeps serving")
    return 0


def add_parser(command: CommandFactory) -> None:
    """Declare the subcommand and its options."""
    a = command(
        "adapters",
        "list, show, use or roll back LoRA adapters; show, stop or promote the A/B trial",
        "The adapter store from the shell. A running bot picks a change up with /adapter use or at restart.",
    )
    a.add_argument(
        "--community",
        type=_community,
        default="commons",
        help="the lineage: g<server id> (e.g. g123) or commons (default)",
    )
    asub = a.add_subparsers(dest="action", required=True, metavar="ACTION", help="what to do")

    def action(name: str, summary: str, description: str) -> argparse.ArgumentParser:
        return asub.add_parser(name, help=summary, description=description, formatter_class=a.formatter_class)

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


def _community(text: str) -> str:
    from bot.domain.community import InvalidCommunity, validate_community

    try:
        return validate_community(text)
    except InvalidCommunity as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
