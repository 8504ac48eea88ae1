import pytest

from bot.storage import Post, PostRecord
from bot.training.dataset import build_examples


def rec(pid, prompt_ids=(0,), completion_ids=(5, 6)):
    return PostRecord(
        Post(pid, pid, 1, None, "post", "t", "", prompt_ids, completion_ids, "base", {}, 0.0, None), (), ()
    )


def test_examples_keep_exact_ids_and_rewards():
    ex = build_examples([rec(1), rec(2, completion_ids=(7,))], [0.5, -1.0])
    assert [(e.post_id, e.prompt_ids, e.completion_ids, e.reward) for e in ex] == [
        (1, (0,), (5, 6), 0.5),
        (2, (0,), (7,), -1.0),
    ]


def test_posts_without_sampled_ids_are_skipped():
    """Legacy rows without token ids cannot be trained on exactly, so they are left out rather than re-tokenised."""
    assert [e.post_id for e in build_examples([rec(1, completion_ids=()), rec(2)], [1.0, 1.0])] == [2]


def test_lengths_must_match():
    with pytest.raises(ValueError):
        build_examples([rec(1)], [])


def test_best_of_n_posts_train_through_all_their_candidates():
    """A post picked by the reward model is not a policy sample: its candidates (all of them) stand in for it."""
    from bot.domain.records import Post, PostRecord
    from bot.storage import PostCandidate
    from bot.training.dataset import policy_samples

    def post(pid, ids):
        return PostRecord(Post(pid, pid, 1, None, "post", f"p{pid}", "", (0,), ids, "base", {}, 0.0, None), (), ())

    cands = {
        1: [PostCandidate(1, i, f"c{i}", (i + 10,), 0.1 * i, True, i == 2) for i in range(3)],
        2: [PostCandidate(2, 0, "only", (7,), None, True, True)],  # a single draw: the post stands for itself
    }
    got = policy_samples([post(1, (9,)), post(2, (8,)), post(3, ())], cands)
    assert [(s.post_id, s.completion_ids, s.text) for s in got] == [
        (1, (10,), "c0"),
        (1, (11,), "c1"),
        (1, (12,), "c2"),
        (2, (8,), "p2"),
    ]
