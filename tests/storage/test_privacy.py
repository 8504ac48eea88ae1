"""Privacy in storage: forget-me across every table in one transaction, the opt-out, my-data, retention, audit."""

from bot.storage import NewPost, Storage
from bot.storage.privacy import REMOVED
from tests.support.storage import mark_trained, rows_holding

M = 424242424242424242  # the member who asks to be forgotten (distinctive: a scan cannot hit it by chance)
OTHER = 7


def post(message_id: int, *, kind: str = "post", prompt: str = "", at: float = 100.0) -> NewPost:
    return NewPost(
        channel_id=1,
        guild_id=9,
        text=f"post {message_id}",
        adapter="base",
        created_at=at,
        message_id=message_id,
        kind=kind,
        prompt=prompt,
        prompt_ids=(0, 1),
        completion_ids=(5, 6),
    )


async def seed(storage: Storage) -> None:
    """The member votes, reacts, replies, starts a story with their own opening, writes a line, runs /retrain."""
    await storage.add_post(post(1))
    await storage.add_vote(1, M, "❤️", at=1.0)
    await storage.add_vote(1, OTHER, "👍", at=1.0)
    await storage.add_reply(500, 1, M, at=1.0, length=12)
    story = await storage.start_story(5, instruction="i", opening="My secret opening", started_by=M, at=2.0)
    answer = post(2, kind="story", prompt="i\nMy secret opening\nhuman_director: My secret line\nmachine_director:")
    await storage.add_story_turn(story, human_text="My secret line", member_id=M, answer=answer, at=3.0)
    other = post(3, kind="story", prompt="i\nMy secret opening\nhuman_director: other words\nmachine_director:")
    await storage.add_story_turn(story, human_text="other words", member_id=OTHER, answer=other, at=4.0)
    run = await storage.start_run(f"/retrain by {M}", at=5.0)
    await storage.finish_run(run, status="skipped", at=6.0, message="nothing")
    await storage.add_audit("/retrain", actor_id=M, guild_id=9, at=5.0)
    await storage.add_audit("/adapter use", actor_id=OTHER, guild_id=9, detail="v0001", at=5.0)


async def test_forget_me_leaves_no_row_holding_the_member(database):
    """Every table: votes, events, replies, story lines and opening redacted, started_by cleared, prompts holding
    their words blanked (and never trained on), their id out of runs and the audit trail; others' data stays."""
    path = database
    async with Storage.open(path) as storage:
        await seed(storage)
        assert await rows_holding(path, [M])  # the scan does find the member before
        done = await storage.forget_member(M, at=10.0)
        assert done["votes"] == 1 and done["reaction events"] == 1 and done["replies"] == 1
        assert done["story lines"] == 1 and done["stories started"] == 1 and done["prompts redacted"] == 2
        assert done["training runs"] == 1 and done["audit entries"] == 1
        records = await storage.post_records()
        assert [r.post.message_id for r in records] == [1]  # redacted story posts are never trained on
        assert [(v.member_id, v.emoji) for v in records[0].votes] == [(OTHER, "👍")]
        story = await storage.active_story(5)
        assert story.opening == REMOVED and [ln.text for ln in story.lines][::2] == [REMOVED, "other words"]
    assert await rows_holding(path, [M, "My secret"]) == []


async def test_opt_out_survives_reopen_and_can_be_lifted(database):
    """After forget-me, a replayed vote or reply is dropped, also after reopening; /opt-in lifts it."""
    path = database
    async with Storage.open(path) as storage:
        await storage.add_post(post(1))
        await storage.forget_member(M, at=1.0)
    async with Storage.open(path) as storage:
        assert storage.is_opted_out(M) and not storage.is_opted_out(OTHER)
        assert not await storage.add_vote(1, M, "❤️", at=2.0)
        assert not await storage.add_reply(600, 1, M, at=2.0)
        assert await storage.reconcile_votes(1, [(M, "❤️")], at=3.0) == 0
        assert not await storage.remove_vote(1, M, "❤️", at=3.0)  # not even a removal event holds their id
        assert (await storage.member_data(M))["reaction_events"] == []
        assert await storage.opt_in(M)
        assert await storage.add_vote(1, M, "❤️", at=4.0)


async def test_my_data_lists_everything_held(storage):
    await seed(storage)
    data = await storage.member_data(M)
    assert data["member_id"] == str(M) and data["opted_out"] is False
    assert [v["emoji"] for v in data["votes"]] == ["❤️"] and len(data["reaction_events"]) == 1
    assert data["replies"][0]["replied_to_message_id"] == "1"
    assert [ln["text"] for ln in data["story_lines"]] == ["My secret line"]
    assert data["stories_started"][0]["opening"] == "My secret opening"
    assert [a["action"] for a in data["audit"]] == ["/retrain"]
    assert (await storage.member_data(OTHER))["story_lines"][0]["text"] == "other words"


async def test_retention_prunes_only_old_trained_raw_data(storage):
    """Raw reaction events and replies older than the cutoff go once their post was trained on; votes stay."""
    await storage.add_post(post(1))
    await storage.add_post(post(2))
    for mid in (1, 2):
        await storage.add_vote(mid, OTHER, "❤️", at=10.0)
        await storage.add_reply(100 + mid, mid, OTHER, at=10.0)
    p1 = await storage.post_id_by_message(1)
    await mark_trained(storage, [p1], at=50.0, run_id=None)
    assert await storage.prune(older_than=5.0) == {"reaction_events": 0, "replies": 0}  # nothing old enough
    assert await storage.prune(older_than=20.0) == {"reaction_events": 1, "replies": 1}  # only the trained post's
    await storage.vacuum()
    records = {r.post.message_id: r for r in await storage.post_records()}
    assert len(records[1].votes) == 1 and records[1].replies == () and len(records[2].replies) == 1


async def test_audit_trail_newest_first(storage):
    await storage.add_audit("/retrain", actor_id=1, guild_id=9, at=1.0)
    await storage.add_audit("/adapter use", actor_id=2, guild_id=9, detail="v0002", at=2.0)
    rows = await storage.audit_entries()
    assert [(r["action"], r["actor_id"], r["detail"]) for r in rows] == [
        ("/adapter use", 2, "v0002"),
        ("/retrain", 1, ""),
    ]


async def test_no_forgotten_text_stays_in_the_database_files(tmp_path):
    """Regression (issue 23, item 9): in WAL mode a forgotten story line stayed readable in kilroy.db-wal after
    forget_member and VACUUM, until the connection closed. Read the files while the connection is still open."""
    path = tmp_path / "k.db"
    async with Storage.open(path) as storage:
        await seed(storage)
        await storage.forget_member(M, at=10.0)
        await storage.vacuum()
        files = [p for p in tmp_path.iterdir() if p.name.startswith("k.db")]
        held = [p.name for p in files if b"My secret" in p.read_bytes()]
        assert held == []


async def test_my_data_lists_trial_decisions_runs_and_prompts(storage):
    """/my-data lists every place the member's id, label or words are held: trial decisions (as the label),
    training runs naming them, the audit trail, and story answers whose prompts hold their lines."""
    await seed(storage)
    tid = await storage.start_trial(candidate="v2", incumbent="v1", run_id=None, share=0.5, alpha=0.05,
                                    max_posts=10, seed=1, baselines={}, at=1.0)  # fmt: skip
    await storage.end_trial(tid, verdict="stopped", decided_by=f"user:{M}", summary="", at=2.0, member_id=M)
    data = await storage.member_data(M)
    assert [t["trial_id"] for t in data["trial_decisions"]] == [str(tid)]
    assert [r["reason"] for r in data["training_runs"]] == [f"/retrain by {M}"]
    assert [p["message_id"] for p in data["story_prompts"]] == ["2", "3"]  # which answers, not others' words
    assert (await storage.get_trial(tid)).decided_by == storage.member_label(M) == data["label"]
    assert str(M) not in storage.member_label(M)


async def test_an_operators_id_is_stored_as_a_label_and_forgotten(database):
    """Regression (issue 23, item 4): trials.decided_by held 'user:<id>' (shown raw, kept after forget-me), and a
    forgotten operator's audit rows read as 'dashboard'. Old 'user:<id>' rows get the label when opened."""
    path = database
    async with Storage.open(path) as storage:
        args = dict(candidate="v2", incumbent="v1", run_id=None, share=0.5, alpha=0.05, max_posts=10, seed=1,
                    baselines={}, at=1.0)  # fmt: skip
        old = await storage.start_trial(**args)
        await storage.end_trial(old, verdict="stopped", decided_by=f"user:{M}", summary="", at=2.0)  # an old row
        await storage.add_audit("/adapter trial stop", actor_id=M, guild_id=9, at=2.0)
        await storage.add_audit("rollback", actor_id=None, guild_id=None, detail="dashboard: ok", at=3.0)
    async with Storage.open(path) as storage:
        label = storage.member_label(M)
        assert (await storage.get_trial(old)).decided_by == label
        assert [e["actor"] for e in await storage.audit_entries()] == ["dashboard", label]
        await storage.forget_member(M, at=4.0)
        assert (await storage.get_trial(old)).decided_by == "[a forgotten member]"
        assert [e["actor"] for e in await storage.audit_entries()] == ["dashboard", "[a forgotten member]"]
        new = await storage.start_trial(**args)
        await storage.end_trial(new, verdict="stopped", decided_by=f"user:{M}", summary="", at=5.0, member_id=M)
        assert (await storage.get_trial(new)).decided_by == "[a forgotten member]"
        await storage.add_audit("/retrain", actor_id=M, guild_id=9, detail=f"by {M}", at=6.0)
        assert (await storage.audit_entries())[0]["actor"] == "[a forgotten member]"
    assert await rows_holding(path, [M, label]) == []


async def test_the_database_file_is_created_owner_only(tmp_path):
    """Issue 23, item 5: SQLite alone creates kilroy.db 0644 (every local user reads members' words)."""
    path = tmp_path / "new" / "k.db"
    async with Storage.open(path) as storage:
        await storage.add_post(post(1))
        assert {p.name: p.stat().st_mode & 0o777 for p in path.parent.iterdir()} == {
            "k.db": 0o600,
            "k.db-wal": 0o600,
            "k.db-shm": 0o600,
        }
    assert path.parent.stat().st_mode & 0o777 == 0o700
