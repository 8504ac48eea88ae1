import random

import pytest

from bot.simulation import BOT_MEMBER, AudienceError, AudienceSpec, builtin_audiences, react
from bot.storage import NewPost


def test_builtin_audiences_like_different_things():
    audiences = builtin_audiences()
    assert {"cat_people", "stargazers", "foodies", "dragon_fans"} <= set(audiences)
    assert audiences["cat_people"].affinity("my fluffy cat") > 0
    assert audiences["stargazers"].affinity("my fluffy cat") == 0
    assert audiences["stargazers"].affinity("the moon tonight") > 0


def test_affinity_likes_dislikes_style_and_cap():
    spec = AudienceSpec.from_dict(
        {
            "members": 3,
            "reaction_rate": 0.1,
            "likes": {"cat": 2},
            "dislikes": {"rain": 1},
            "question_weight": 0.5,
            "emoji_weight": 0.25,
            "max_affinity": 3,
        }
    )
    assert spec.affinity("Cat!") == 2
    assert spec.affinity("cat in the rain?") == pytest.approx(1.5)
    assert spec.affinity("cat 🐱 cat cat?") == pytest.approx(2.75)
    assert spec.affinity("unknown words only") == 0  # members simply never see them


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"reaction_rate": 0.1, "likes": {}}, "missing 'members'"),
        ({"members": 0, "reaction_rate": 0.1}, "at least 1"),
        ({"members": 5, "reaction_rate": 2}, "reaction_rate"),
        ({"members": 5, "reaction_rate": 0.1, "likes": {"cat": "lots"}}, "'likes' must map words to numbers"),
        ([1, 2], "JSON object"),
    ],
)
def test_bad_specs_name_the_problem(data, message):
    with pytest.raises(AudienceError, match=message):
        AudienceSpec.from_dict(data)


def test_spec_file_errors(tmp_path):
    bad = tmp_path / "a.json"
    bad.write_text("{not json")
    with pytest.raises(AudienceError, match="not valid JSON"):
        AudienceSpec.from_file(bad)
    with pytest.raises(AudienceError, match="cannot read"):
        AudienceSpec.from_file(tmp_path / "missing.json")


async def test_react_goes_through_storage_and_never_counts_bots(storage):
    """Liked posts collect more votes than disliked ones; the simulated bot's reactions never become votes."""
    spec = AudienceSpec.from_dict({"members": 40, "reaction_rate": 0.1, "likes": {"cat": 2}, "dislikes": {"rain": 2}})
    rng = random.Random(0)
    for mid, text in ((1, "a cat"), (2, "rain again")):
        await storage.add_post(NewPost(channel_id=1, text=text, adapter="base", created_at=0.0, message_id=mid))
        await react(storage, spec, mid, text, 1.0, rng)
    recs = {r.post.message_id: r for r in await storage.post_records()}
    assert len(recs[1].votes) > len(recs[2].votes)
    assert all(v.member_id != BOT_MEMBER for r in recs.values() for v in r.votes)
