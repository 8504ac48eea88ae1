"""The privacy service: forget-me across the database and the adapters' metadata, opt-in, my-data, retention."""

from __future__ import annotations

import json
from unittest.mock import AsyncMock

from bot.privacy.service import PrivacyService
from bot.storage import NewPost
from bot.storage.privacy import FORGOTTEN
from tests.support.adapters import fake_adapter
from tests.support.storage import mark_trained

M, OTHER = 712345678901234567, 712345678901234999


async def seed_votes(storage) -> None:
    await storage.add_post(NewPost(channel_id=500, text="hello", adapter="base", created_at=1.0, message_id=1))
    await storage.add_vote(1, M, "❤️", at=2.0)
    await storage.add_vote(1, OTHER, "👍", at=2.0)


async def votes(storage) -> list[tuple[int, str]]:
    (rec,) = await storage.post_records()
    return sorted((v.member_id, v.emoji) for v in rec.votes)


async def test_forget_deletes_the_members_rows_scrubs_adapters_and_opts_them_out(storage, store):
    """Forget-me deletes the member's votes (others' stay), replaces their id in adapters' meta.json (others'
    files untouched), says what it did, and later events of theirs are dropped."""
    await seed_votes(storage)
    fake_adapter(store.root, "v0001")
    (store.root / "v0001" / "meta.json").write_text(json.dumps({"reason": f"/retrain by {M}"}))
    fake_adapter(store.root, "v0002")
    untouched = (store.root / "v0002" / "meta.json").read_text()
    privacy = PrivacyService(storage, retention_days=90, adapter_store=store, clock=lambda: 10.0)

    forgotten = await privacy.forget(M)

    assert forgotten.deleted["votes"] == 1 and forgotten.scrubbed == 1
    assert await votes(storage) == [(OTHER, "👍")]
    meta = (store.root / "v0001" / "meta.json").read_text()
    assert str(M) not in meta and json.loads(meta)["reason"] == f"/retrain by {FORGOTTEN}"
    assert (store.root / "v0002" / "meta.json").read_text() == untouched
    assert not await storage.add_vote(1, M, "👍", at=20.0)  # opted out: a live event of theirs is not stored
    assert await votes(storage) == [(OTHER, "👍")]


async def test_forget_without_an_adapter_store_touches_only_the_database(storage):
    await seed_votes(storage)
    forgotten = await PrivacyService(storage, retention_days=90).forget(M)
    assert forgotten.deleted["votes"] == 1 and forgotten.scrubbed == 0


async def test_opt_in_lifts_the_opt_out_once(storage):
    privacy = PrivacyService(storage, retention_days=90)
    assert not await privacy.opt_in(M)  # nothing to lift
    await privacy.forget(M)
    assert await privacy.opt_in(M) and not await privacy.opt_in(M)
    await seed_votes(storage)
    assert await votes(storage) == [(M, "❤️"), (OTHER, "👍")]


async def test_export_holds_the_members_records_and_the_retention_period(storage):
    await seed_votes(storage)
    export = await PrivacyService(storage, retention_days=30).export(M)
    data = json.loads(export.payload)
    assert data["member_id"] == str(M) and data["retention_days"] == 30
    assert [v["emoji"] for v in data["votes"]] == ["❤️"]
    assert export.counts["votes"] == 1 and export.counts["story_lines"] == 0


async def test_retention_prunes_old_trained_raw_data(storage):
    """The daily retention run deletes raw data of trained posts older than KILROY_RETENTION_DAYS."""
    await storage.add_post(NewPost(channel_id=500, text="old", adapter="base", created_at=1.0, message_id=2))
    await storage.add_vote(2, 42, "❤️", at=1.0)
    await mark_trained(storage, [await storage.post_id_by_message(2)], at=2.0, run_id=None)
    privacy = PrivacyService(storage, retention_days=1, clock=lambda: 3 * 86400.0)
    assert await privacy.run_retention() == {"reaction_events": 1, "replies": 0}
    assert await privacy.run_retention() == {"reaction_events": 0, "replies": 0}


async def test_retention_vacuums_after_a_forget_even_when_nothing_is_old(storage):
    """A forget-me's deleted rows leave the file at the next retention run (VACUUM), once."""
    privacy = PrivacyService(storage, retention_days=0)
    storage.vacuum = AsyncMock(wraps=storage.vacuum)
    assert await privacy.run_retention() == {}
    storage.vacuum.assert_not_awaited()
    await privacy.forget(M)
    await privacy.run_retention()
    await privacy.run_retention()
    storage.vacuum.assert_awaited_once()


async def test_retention_survives_a_failing_vacuum_and_tries_again(storage):
    """A busy database must not end the daily loop: the error is logged, the next run VACUUMs."""
    privacy = PrivacyService(storage, retention_days=0)
    await privacy.forget(M)
    real = storage.vacuum
    storage.vacuum = AsyncMock(side_effect=RuntimeError("database is locked"))
    assert await privacy.run_retention() == {}
    storage.vacuum = AsyncMock(wraps=real)
    await privacy.run_retention()
    storage.vacuum.assert_awaited_once()
