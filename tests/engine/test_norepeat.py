"""The decoding guard: a completion never repeats a word trigram of its own, and nothing else is banned."""

import dataclasses

import pytest
import torch

from bot.config.settings import SamplingParams
from bot.engine.generator import sample_batch
from bot.engine.model import load_base
from bot.engine.norepeat import NoRepeatedWords, banned_next, token_words
from bot.training.objective import repeat3


@pytest.fixture(scope="module")
def loaded(tiny_model_dir):
    from bot.config.settings import ModelSettings

    return load_base(ModelSettings(name=str(tiny_model_dir)), tiny_model_dir.parent, device="cpu")


def ids(tok, text: str) -> list[int]:
    return tok(text, add_special_tokens=False)["input_ids"]


def first(tok, text: str) -> int:
    return ids(tok, text)[0]


def test_the_word_that_would_complete_a_repeated_trigram_is_banned(loaded):
    tok = loaded.tokenizer
    banned = banned_next(ids(tok, "the best combo. the best"), token_words(tok), 3)
    assert first(tok, " combo") in banned
    assert first(tok, " cake") not in banned


def test_words_are_compared_lowercased_across_punctuation(loaded):
    tok = loaded.tokenizer
    words = token_words(tok)
    assert first(tok, " combo") in banned_next(ids(tok, "The Best combo!! the best"), words, 3)
    assert first(tok, " combo") in banned_next(ids(tok, "the best, combo. the best"), words, 3)


def test_a_word_said_twice_is_fine_only_the_run_of_three_is_not(loaded):
    tok = loaded.tokenizer
    words = token_words(tok)
    assert banned_next(ids(tok, "the cat and the"), words, 3) == []
    pieces = ids(tok, " zorbulaxian")
    assert len(pieces) > 1  # a word the tokenizer splits
    sings = ids(tok, " sings")
    text = ids(tok, "the zorbulaxian sings. the zorbulaxian") + sings[:-1]
    assert sings[-1] in banned_next(text, words, 3)  # banned at the piece that would complete the repeat
    # saying the split word again is allowed: its last piece is not banned after "and the zorbula..."
    partial = ids(tok, "the zorbulaxian sings and the") + pieces[:-1]
    assert pieces[-1] not in banned_next(partial, words, 3)


def test_a_multi_token_word_is_banned_at_the_piece_that_completes_it(loaded):
    tok = loaded.tokenizer
    pieces = ids(tok, " zorbulaxian")
    partial = ids(tok, "so big zorbulaxian. so big") + pieces[:-1]
    assert pieces[-1] in banned_next(partial, token_words(tok), 3)


def test_only_the_completion_counts_not_the_prompt(loaded):
    tok = loaded.tokenizer
    prompt = ids(tok, "the best combo. the best")
    completion = ids(tok, " combo is the best")
    guard = NoRepeatedWords(tok, 3, len(prompt))
    scores = torch.zeros((1, len(tok)))
    out = guard(torch.tensor([prompt + completion]), scores.clone())
    assert torch.isfinite(out).all()  # "the best" in the completion has never been followed by a word yet
    out = guard(torch.tensor([prompt + ids(tok, " the best combo and the best")]), scores.clone())
    assert out[0, first(tok, " combo")] == float("-inf")
    assert torch.isfinite(out[0]).sum() == len(tok) - len(
        banned_next(ids(tok, " the best combo and the best"), token_words(tok), 3)
    )


def test_samples_never_repeat_a_word_trigram_with_the_guard(loaded):
    params = SamplingParams(max_new_tokens=40)
    draws = {}
    for n in (0, 3):
        torch.manual_seed(0)
        samples = sample_batch(
            loaded.model,
            loaded.tokenizer,
            prompt="",
            n=384,
            params=dataclasses.replace(params, no_repeat_ngram=n),
            stop_at_newline=True,
            context_size=loaded.context_size,
            adapter="base",
        )
        draws[n] = [s.text for s in samples]
    assert repeat3(draws[0]) > 0.01  # the tiny model does loop on its templates ...
    assert repeat3(draws[3]) == 0.0  # ... and the guard stops every one


def test_the_setting_is_validated(make_settings):
    assert make_settings().generation.no_repeat_ngram == 3
    assert make_settings(KILROY_NO_REPEAT_NGRAM="0").generation.no_repeat_ngram == 0
    with pytest.raises(Exception, match="KILROY_NO_REPEAT_NGRAM"):
        make_settings(KILROY_NO_REPEAT_NGRAM="-1")
