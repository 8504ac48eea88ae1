"""KILROY_SHARD_COUNT and KILROY_SHARD_IDS: read, and refused with a message naming the variable and the fix."""

from __future__ import annotations

import pytest

from bot.config.settings import ConfigError, Settings, ShardSettings


def test_unset_means_every_shard_in_this_process():
    assert Settings.from_env({}).shards == ShardSettings(count=None, ids=())


def test_count_and_ids_are_read():
    s = Settings.from_env({"KILROY_SHARD_COUNT": "4", "KILROY_SHARD_IDS": "3, 1"}).shards
    assert s == ShardSettings(count=4, ids=(3, 1))


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"KILROY_SHARD_IDS": "0,1"}, "KILROY_SHARD_IDS='0,1' needs KILROY_SHARD_COUNT"),
        ({"KILROY_SHARD_COUNT": "2", "KILROY_SHARD_IDS": "1,2"}, "names shard 2, but KILROY_SHARD_COUNT=2"),
        ({"KILROY_SHARD_COUNT": "4", "KILROY_SHARD_IDS": "1,1"}, "names shard 1 more than once"),
        ({"KILROY_SHARD_COUNT": "0"}, "KILROY_SHARD_COUNT='0' is not a whole number of shards"),
        ({"KILROY_SHARD_COUNT": "two"}, "KILROY_SHARD_COUNT='two' is not a whole number of shards"),
        ({"KILROY_SHARD_COUNT": "2", "KILROY_SHARD_IDS": "-1"}, "KILROY_SHARD_IDS='-1' is not a comma-separated"),
    ],
)
def test_bad_shards_are_refused_naming_the_variable(env, says):
    with pytest.raises(ConfigError) as err:
        Settings.from_env(env)
    assert any(says in p for p in err.value.problems), err.value.problems


def test_shard_problems_are_reported_with_the_others():
    with pytest.raises(ConfigError) as err:
        Settings.from_env({"KILROY_SHARD_COUNT": "2", "KILROY_SHARD_IDS": "5", "KILROY_TOP_P": "2"})
    assert {p.split("=")[0] for p in err.value.problems} == {"KILROY_SHARD_IDS", "KILROY_TOP_P"}
