"""Who does what when the bot's gateway shards are split across processes. Pure.

Discord sends a server's events on shard `(guild_id >> 22) % shard_count`. Kilroy follows the same rule for its own
work: a server's scheduled posts and the catch-up of its missed reactions belong to the process holding its shard,
so across processes nothing runs twice. Jobs over the whole database (retention and its VACUUM, nightly training,
the A/B trial's decision, the slash-command sync) belong to the process holding shard 0.

With no KILROY_SHARD_IDS (the default), this one process holds every shard, so it owns every server and every job.
"""

from __future__ import annotations

from bot.config.settings import ShardSettings

DATABASE_SHARD = 0  # the process holding this shard runs the jobs that span the whole database


def shard_of(guild_id: int, shard_count: int) -> int:
    """The shard a server's events arrive on (Discord's formula)."""
    return (guild_id >> 22) % shard_count


def holds_every_shard(shards: ShardSettings) -> bool:
    """True when this process holds every shard: no KILROY_SHARD_IDS, or all of them listed."""
    return shards.count is None or not shards.ids or set(shards.ids) >= set(range(shards.count))


def owns_guild(guild_id: int, shards: ShardSettings) -> bool:
    """True if this process holds the server's shard, so its posts and catch-up are this process's work."""
    if holds_every_shard(shards):
        return True
    assert shards.count is not None  # holds_every_shard is True without a count
    return shard_of(guild_id, shards.count) in shards.ids


def runs_database_jobs(shards: ShardSettings) -> bool:
    """True if this process runs the database-wide jobs: it holds shard 0 (or every shard)."""
    return holds_every_shard(shards) or DATABASE_SHARD in shards.ids
