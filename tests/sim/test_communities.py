import pytest

from bot.sim.communities import audiences_from, mode_settings, simulate_communities, summarise
from bot.sim.nights import AudienceError, builtin_audiences
from bot.storage import Storage
from tests.support.data import OPEN_GATE


def test_audiences_are_built_in_names_or_spec_files(tmp_path):
    spec = tmp_path / "football.json"
    spec.write_text('{"members": 5, "reaction_rate": 0.1, "likes": {"goal": 1}}')
    got = audiences_from(f"cat_people, {spec}")
    assert [a.name for a in got] == ["cat_people", "football"]
    with pytest.raises(AudienceError, match="unknown audience 'nobody'"):
        audiences_from("cat_people,nobody")
    with pytest.raises(AudienceError, match="at least two"):
        audiences_from("cat_people")


def test_each_way_of_learning_sets_the_commons(make_settings):
    s = make_settings(KILROY_COMMUNITY_MIN_POSTS="50")
    assert mode_settings(s, "community").training.commons == "off"
    assert mode_settings(s, "shared").training.community_min_posts > 10**5  # the servers never train their own
    assert mode_settings(s, "commons").training.community_min_posts == 50
    assert mode_settings(s, "commons", min_posts=7).training.community_min_posts == 7
    with pytest.raises(ValueError):
        mode_settings(s, "everyone")


@pytest.mark.slow
async def test_a_new_server_is_served_by_the_commons_then_by_its_own_adapter(tiny_settings, tmp_path):
    """Two servers on one bot: night 0 the base serves both; the commons trains on both servers' posts and serves
    them while they are quiet; once a server has its posts, its own first adapter trains from the commons and
    serves it. Each server's posts carry its guild and the adapter that wrote them."""
    settings = tiny_settings(KILROY_EPOCHS="1", **OPEN_GATE)
    cats, stars = builtin_audiences()["cat_people"], builtin_audiences()["stargazers"]
    result = await simulate_communities(
        settings,
        [cats, stars],
        mode="commons",
        nights=3,
        posts_per_night=8,
        seed=0,
        workdir=tmp_path / "sim",
        min_posts=16,
        eval_samples=8,
    )
    first, second = result.servers
    assert (first.community, second.community) == ("g101", "g102")
    assert [n.adapter for n in first.nights] == ["base", "commons/v0001", "g101/v0001"]
    assert [n.adapter for n in second.nights] == ["base", "commons/v0001", "g102/v0001"]
    assert "8 settled posts" in first.nights[0].trained and first.nights[1].trained == "promoted"
    assert result.commons[0] == "promoted"
    async with Storage.open(tmp_path / "sim" / "kilroy.db") as storage:
        for guild, server in ((101, first), (102, second)):
            posts = [r.post for r in await storage.post_records(guild_id=guild)]
            assert len(posts) == 24
            assert [p.adapter for p in posts[::8]] == [n.adapter for n in server.nights]
    data = summarise([result])
    assert [c["community"] for c in data["communities"]] == ["g101", "g102"]
    assert data["communities"][0]["lift"] == pytest.approx(first.lift)
