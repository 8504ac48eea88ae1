"""`kilroy adapters [--community g5] trial [show|stop|promote]` mirrors the operators' slash command from the shell,
on one community's lineage (here server 5's, adapters/g5/)."""

import asyncio
import time

import pytest

from bot.adapters.store import AdapterStore
from bot.cli.main import main
from bot.storage import NewPost, Storage
from tests.cli.test_main import env  # noqa: F401 - fixture
from tests.storage.test_trials import _start


def _prepare(tmp_path, with_trial: bool = True) -> int | None:
    async def go():
        async with Storage.open(tmp_path / "data" / "kilroy.db") as s:
            if not with_trial:
                return None
            tid = await _start(s, candidate="g5/v0002", incumbent="base", at=time.time() - 10, community="g5")
            for i in range(4):
                arm = "candidate" if i % 2 else "incumbent"
                await s.add_post(
                    NewPost(
                        channel_id=1, text="x", adapter="a", created_at=1.0, message_id=i + 1, trial_id=tid, arm=arm
                    )
                )
            return tid

    return asyncio.run(go())


def _fake_adapter(tmp_path, name: str) -> None:
    folder = tmp_path / "adapters" / "g5" / name
    folder.mkdir(parents=True)
    header = b"{}"
    (folder / "adapter_model.safetensors").write_bytes(len(header).to_bytes(8, "little") + header)
    (folder / "adapter_config.json").write_text("{}")


def test_trial_show_stop(env, tmp_path, capsys):  # noqa: F811
    """show prints the arms and the test's state; stop ends it as decided by 'cli'; nothing left to stop after."""
    g5 = ["adapters", "--community", "g5", "trial"]
    assert main(g5) == 0
    assert "no A/B trial" in capsys.readouterr().out
    tid = _prepare(tmp_path)
    assert main(["adapters", "trial"]) == 0  # the commons has no trial: server 5's is its own
    assert "no A/B trial" in capsys.readouterr().out
    assert main([*g5, "show"]) == 0
    out = capsys.readouterr().out
    assert f"Trial #{tid}" in out and "candidate 2, incumbent 2" in out and "undecided" in out
    assert main([*g5, "stop"]) == 0
    assert "stopped" in capsys.readouterr().out
    assert main([*g5, "stop"]) == 2
    assert main(g5) == 0
    assert "ended" in capsys.readouterr().out


def test_stopping_a_guard_rolls_the_pointer_back_to_its_anchor(env, tmp_path, capsys):  # noqa: F811
    """A guard's candidate serves (the pointer is on it); `trial stop` from the shell rolled nothing back, so the
    stopped candidate went on serving after a restart. Now the pointer returns to the anchor."""
    for name in ("v0001", "v0002"):
        _fake_adapter(tmp_path, name)
    store = AdapterStore(tmp_path / "adapters" / "g5")
    store.set_current("v0001")
    store.set_current("v0002")  # the guard serves its candidate at once

    async def go():
        async with Storage.open(tmp_path / "data" / "kilroy.db") as s:
            return await _start(s, candidate="g5/v0002", incumbent="g5/v0001", at=time.time() - 10, community="g5")

    asyncio.run(go())
    assert main(["adapters", "--community", "g5", "trial", "stop"]) == 0
    assert "g5/v0001 keeps serving" in capsys.readouterr().out
    assert AdapterStore(tmp_path / "adapters" / "g5").current() == "v0001"


def test_trial_promote_moves_the_pointer(env, tmp_path, capsys):  # noqa: F811
    """promote makes the candidate current and records the verdict."""
    _fake_adapter(tmp_path, "v0002")
    tid = _prepare(tmp_path)
    assert main(["adapters", "--community", "g5", "trial", "promote"]) == 0
    assert AdapterStore(tmp_path / "adapters" / "g5").current() == "v0002"
    assert AdapterStore(tmp_path / "adapters" / "commons").current() == "base"  # another lineage: untouched

    async def verdict():
        async with Storage.open(tmp_path / "data" / "kilroy.db") as s:
            return (await s.get_trial(tid)).verdict

    assert asyncio.run(verdict()) == "promoted_by_hand"


def test_list_use_and_rollback_act_on_one_communitys_lineage(env, tmp_path, capsys):  # noqa: F811
    """`--community g5` lists, switches and rolls back server 5's lineage only, and says what serves it."""
    for name in ("v0001", "v0002"):
        _fake_adapter(tmp_path, name)
    assert main(["adapters", "--community", "g5", "use", "v0001"]) == 0
    assert main(["adapters", "--community", "g5", "use", "v0002"]) == 0
    capsys.readouterr()
    assert main(["adapters", "--community", "g5", "list"]) == 0
    out = capsys.readouterr().out
    assert "g5: served by g5/v0002" in out and "* v0002" in out
    assert main(["adapters", "list"]) == 0  # the commons: nothing of server 5's
    out = capsys.readouterr().out
    assert "commons: served by base" in out and "v0001" not in out
    assert main(["adapters", "--community", "g5", "rollback"]) == 0
    assert AdapterStore(tmp_path / "adapters" / "g5").current() == "v0001"
    with pytest.raises(SystemExit):
        main(["adapters", "--community", "guild5", "list"])
