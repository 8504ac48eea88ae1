import math

import pytest
import torch

from bot.training.objective import (
    IGNORE,
    awr_weights,
    distinct_n,
    kl_per_sequence,
    reward_weighted_loss,
    token_logprobs,
)


def test_token_logprobs_masks_prompt_and_padding():
    """Only labelled positions count, and their log-probs match log_softmax."""
    logits = torch.randn(1, 4, 5)
    labels = torch.tensor([[IGNORE, 2, 3, IGNORE]])
    logp, mask = token_logprobs(logits, labels)
    assert mask.tolist() == [[True, True, False]]
    expected = torch.log_softmax(logits[0, 0], -1)[2]
    assert logp[0, 0] == pytest.approx(float(expected), abs=1e-6)
    assert logp[0, 2] == 0


def test_reinforce_sign():
    """A positive advantage lowers the loss when the post's likelihood rises; a negative one raises it."""
    logp = torch.tensor([-5.0, -5.0], requires_grad=True)
    loss = reward_weighted_loss(logp, torch.tensor([1.0, -1.0]), torch.zeros(2), beta=0.0)
    loss.backward()
    assert logp.grad[0] < 0 < logp.grad[1]  # gradient descent raises post 0, lowers post 1


def test_zero_advantage_zero_policy_gradient():
    """Posts at the channel's usual level do not move the policy."""
    logp = torch.tensor([-3.0, -4.0], requires_grad=True)
    reward_weighted_loss(logp, torch.zeros(2), torch.zeros(2), beta=0.0).backward()
    assert torch.all(logp.grad == 0)


def test_kl_zero_when_equal_and_positive_otherwise():
    mask = torch.ones(1, 3, dtype=torch.bool)
    a = torch.tensor([[-1.0, -2.0, -0.5]])
    assert float(kl_per_sequence(a, a, mask)) == 0.0
    assert float(kl_per_sequence(a, a - 1.0, mask)) > 0.0


def test_kl_term_adds_beta_times_mean():
    logp = torch.zeros(2)
    loss = reward_weighted_loss(logp, torch.zeros(2), torch.tensor([1.0, 3.0]), beta=0.5)
    assert float(loss) == pytest.approx(1.0)


def test_awr_weights_positive_capped_mean_one():
    w = awr_weights(torch.tensor([-2.0, 0.0, 2.0, 100.0]), temperature=1.0)
    assert torch.all(w > 0) and float(w.mean()) == pytest.approx(1.0)
    assert float(w[3] / w[0]) <= 20.0 / math.exp(-2.0) + 1e-3


def test_unknown_objective():
    with pytest.raises(ValueError):
        reward_weighted_loss(torch.zeros(1), torch.zeros(1), torch.zeros(1), 0.0, objective="magic")


def test_distinct2():
    assert distinct_n(["a b c", "a b d"]) == pytest.approx(3 / 4)
    assert distinct_n(["same same", "same same"]) == pytest.approx(0.5)
    assert distinct_n([]) == 0.0


def test_repeated_ngram_positions_marks_the_loop():
    from bot.training.objective import repeated_ngram_positions

    # "a b c x a b c": the second "a b c" completes at index 6; "b c x" etc. never repeat
    assert repeated_ngram_positions([1, 2, 3, 9, 1, 2, 3]) == [6]
    assert repeated_ngram_positions([1, 2, 3, 1, 2, 3, 1]) == [5, 6]
    assert repeated_ngram_positions([1, 2]) == []


def test_unlikelihood_pushes_down_marked_tokens_only():
    import torch

    from bot.training.objective import unlikelihood_loss

    logp = torch.log(torch.tensor([[0.9, 0.5, 0.1]], requires_grad=False)).requires_grad_(True)
    marked = torch.tensor([[0.0, 1.0, 0.0]])
    loss = unlikelihood_loss(logp, marked)
    assert float(loss) == pytest.approx(-math.log(0.5), rel=1e-5)
    loss.backward()
    assert logp.grad[0, 0] == 0 and logp.grad[0, 2] == 0 and logp.grad[0, 1] > 0  # descent lowers the marked one
    assert float(unlikelihood_loss(logp, torch.zeros_like(marked))) == 0
