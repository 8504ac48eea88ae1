"""Who owns what across shard processes: a server belongs to the process holding its shard, the database-wide jobs
to the one holding shard 0, and with no KILROY_SHARD_IDS one process owns everything."""

from __future__ import annotations

from bot.config.settings import ShardSettings
from bot.domain.shards import holds_every_shard, owns_guild, runs_database_jobs, shard_of

# real-looking snowflakes: the shard comes from the timestamp bits (id >> 22), not the low bits
GUILDS = [81384788765712384, 172018499005317120, 336642139381301249, 613425648685547541, 1000, 4195304]


def test_shard_of_is_discords_formula():
    assert [shard_of(g, 1) for g in GUILDS] == [0] * len(GUILDS)
    assert shard_of(1000, 2) == 0 and shard_of(4195304, 2) == 1  # (4195304 >> 22) == 1
    assert shard_of(81384788765712384, 16) == (81384788765712384 >> 22) % 16


def test_by_default_one_process_owns_every_server_and_every_job():
    for shards in (ShardSettings(), ShardSettings(count=4), ShardSettings(count=2, ids=(0, 1))):
        assert holds_every_shard(shards) and runs_database_jobs(shards)
        assert all(owns_guild(g, shards) for g in GUILDS)


def test_each_server_is_owned_by_exactly_one_process():
    """Split four shards over processes {0, 2}, {1}, {3}: every server has one owner, by its shard."""
    split = [ShardSettings(count=4, ids=ids) for ids in ((0, 2), (1,), (3,))]
    for g in GUILDS:
        owners = [s.ids for s in split if owns_guild(g, s)]
        assert len(owners) == 1 and shard_of(g, 4) in owners[0]


def test_only_the_process_holding_shard_0_runs_the_database_jobs():
    assert [runs_database_jobs(ShardSettings(count=4, ids=ids)) for ids in ((0, 2), (1,), (3,))] == [
        True,
        False,
        False,
    ]
