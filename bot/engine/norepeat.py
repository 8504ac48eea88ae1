"""A post never repeats a run of its own words: "the best combo ... the best combo" cannot be sampled.

Reward-weighted learning sharpens the model toward what the community liked, and a sharper model loops on its own
templates more often ("what is your favourite pasta? what is your favourite tacos?"); on a real server's weak
signal the rise is small but steady (issue 10). Decoding guards against it whatever the adapter: at each step, a
token that would complete a word n-gram the completion already holds is removed before top-k/top-p sampling.

Words, not tokens: HF's `no_repeat_ngram_size` bans token n-grams over the whole input, so it would ban the
prompt's phrases (a story's names and refrains) and the third piece of any three-token word said twice. Here only
the completion counts, words are compared lowercased as the `repeat3` metric reads them, and punctuation
separates words without being one. A multi-token word is banned at the piece that would complete it exactly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_WORD = re.compile(r"[\w'-]+")

NEW, CONTINUE, SEPARATOR = 0, 1, 2


@dataclass(frozen=True)
class TokenWords:
    """How each token id reads as words: its kind (starts a word, continues one, or separates) and its text."""

    kinds: list[int]
    cores: list[str]  # lowercased text without the leading space; "" for separators
    new_by_core: dict[str, list[int]]  # word-starting tokens by their text
    continue_by_core: dict[str, list[int]]  # word-continuing tokens by their text


def token_words(tokenizer: Any) -> TokenWords:
    """The word reading of a tokenizer's vocabulary (computed once per tokenizer, then cached on it)."""
    cached = getattr(tokenizer, "_kilroy_token_words", None)
    if cached is not None:
        return cached
    size = max(len(tokenizer), max(tokenizer.get_vocab().values()) + 1)
    tokens = tokenizer.convert_ids_to_tokens(list(range(size)))
    kinds, cores = [SEPARATOR] * size, [""] * size
    new_by_core: dict[str, list[int]] = {}
    continue_by_core: dict[str, list[int]] = {}
    for i, tok in enumerate(tokens):
        if tok is None:
            continue
        text = tokenizer.convert_tokens_to_string([tok])
        core = text.strip().lower()
        if not core or not _WORD.fullmatch(core):
            continue  # punctuation, emoji, whitespace or a mix: a separator, never part of a banned n-gram
        kind = NEW if text[:1].isspace() else CONTINUE
        kinds[i], cores[i] = kind, core
        (new_by_core if kind == NEW else continue_by_core).setdefault(core, []).append(i)
    out = TokenWords(kinds, cores, new_by_core, continue_by_core)
    tokenizer._kilroy_token_words = out
    return out


def banned_next(completion: list[int], words: TokenWords, n: int) -> list[int]:
    """Token ids that, sampled next, would complete a word n-gram `completion` already holds."""
    done: list[str] = []  # complete words
    partial = ""  # the word the last tokens are spelling, which the next token may continue
    for tok in completion:
        kind = words.kinds[tok] if tok < len(words.kinds) else SEPARATOR
        if kind == CONTINUE and partial:
            partial += words.cores[tok]
            continue
        if partial:
            done.append(partial)
        partial = words.cores[tok] if kind != SEPARATOR else ""
    seen: dict[tuple[str, ...], set[str]] = {}

    def grams(ws: list[str]) -> None:
        for i in range(len(ws) - n + 1):
            seen.setdefault(tuple(ws[i : i + n - 1]), set()).add(ws[i + n - 1])

    banned: list[int] = []
    if partial:
        # the next token either continues the partial word ...
        grams(done)
        head = tuple(done[len(done) - (n - 1) :]) if len(done) >= n - 1 else None
        for word in seen.get(head, ()) if head is not None else ():
            if word.startswith(partial) and len(word) > len(partial):
                banned += words.continue_by_core.get(word[len(partial) :], [])
        # ... or ends it and starts the next one
        ended = [*done, partial]
        seen.clear()
        grams(ended)
        head = tuple(ended[len(ended) - (n - 1) :]) if len(ended) >= n - 1 else None
    else:
        grams(done)
        head = tuple(done[len(done) - (n - 1) :]) if len(done) >= n - 1 else None
    for word in seen.get(head, ()) if head is not None else ():
        banned += words.new_by_core.get(word, [])
        if not partial:  # after punctuation a word may start without a space ("!!the")
            banned += words.continue_by_core.get(word, [])
    return banned


class NoRepeatedWords:
    """A transformers logits processor: completions (everything after `prompt_length`) repeat no word n-gram."""

    def __init__(self, tokenizer: Any, n: int, prompt_length: int) -> None:
        self.words, self.n, self.start = token_words(tokenizer), n, prompt_length

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        if input_ids.shape[1] - self.start < self.n - 1:
            return scores
        for row, completion in enumerate(input_ids[:, self.start :].tolist()):
            ids = banned_next(completion, self.words, self.n)
            if ids:
                scores[row, ids] = float("-inf")
        return scores
