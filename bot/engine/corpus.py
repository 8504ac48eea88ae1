"""A generated corpus of social-media-like posts and story exchanges, for the offline tiny model.

Posts vary in topic, length, tone (statements, questions, exclamations) and emoji, so that the pretrained tiny
model's samples carry features a simulated audience can prefer. Topic frequencies are deliberately uneven:
`dragons` appears in about 3% of posts, the "rare but sometimes written" case the learning loop must still find.
"""

from __future__ import annotations

import random

from bot.domain.story import HUMAN, INSTRUCTION, MACHINE

# topic -> (weight, nouns, adjectives, verbs, emoji)
TOPICS: dict[str, tuple[float, list[str], list[str], list[str], list[str]]] = {
    "cats": (
        1.0,
        ["cat", "kitten", "cats", "whiskers", "purr", "litter box", "catnip", "paws"],
        ["fluffy", "sleepy", "grumpy", "tiny", "orange"],
        ["napping", "purring", "staring at", "knocking over", "chasing"],
        ["🐱", "😺", "🐾"],
    ),
    "coffee": (
        1.0,
        ["coffee", "espresso", "latte", "mug", "beans", "cafe", "cappuccino"],
        ["strong", "hot", "bitter", "perfect", "fresh"],
        ["brewing", "sipping", "grinding", "spilling", "needing"],
        ["☕", "😴"],
    ),
    "space": (
        1.0,
        ["moon", "stars", "rocket", "galaxy", "telescope", "planet", "orbit", "comet"],
        ["distant", "bright", "cosmic", "silent", "infinite"],
        ["watching", "launching", "orbiting", "dreaming about", "counting"],
        ["🚀", "🌙", "✨"],
    ),
    "football": (
        1.0,
        ["match", "goal", "team", "referee", "striker", "stadium", "penalty"],
        ["late", "brilliant", "awful", "huge", "last-minute"],
        ["scoring", "watching", "shouting at", "missing", "celebrating"],
        ["⚽", "🏆"],
    ),
    "food": (
        1.0,
        ["pizza", "pasta", "soup", "tacos", "bread", "cheese", "noodles", "pancakes"],
        ["spicy", "crispy", "homemade", "warm", "delicious"],
        ["cooking", "eating", "baking", "craving", "sharing"],
        ["🍕", "🍜", "😋"],
    ),
    "music": (
        1.0,
        ["song", "guitar", "album", "concert", "playlist", "drums", "chorus"],
        ["loud", "new", "old", "catchy", "sad"],
        ["playing", "humming", "listening to", "learning", "replaying"],
        ["🎸", "🎶", "🎧"],
    ),
    "weather": (
        1.0,
        ["rain", "storm", "snow", "sunshine", "clouds", "wind", "umbrella"],
        ["cold", "grey", "wet", "windy", "gloomy"],
        ["watching", "walking in", "hiding from", "waiting for", "loving"],
        ["🌧️", "☀️", "❄️"],
    ),
    "code": (
        1.0,
        ["bug", "compiler", "laptop", "deploy", "tests", "keyboard", "server"],
        ["broken", "flaky", "fast", "legacy", "weird"],
        ["fixing", "debugging", "rewriting", "shipping", "blaming"],
        ["💻", "🐛", "🔥"],
    ),
    "garden": (
        1.0,
        ["tomatoes", "roses", "garden", "seeds", "soil", "bees", "flowers"],
        ["green", "wild", "blooming", "muddy", "tall"],
        ["planting", "watering", "picking", "growing", "pruning"],
        ["🌱", "🌻", "🐝"],
    ),
    "dragons": (
        0.28,  # about 3% of posts: rare but present
        ["dragon", "dragons", "dragon egg", "wyvern", "dragonfire"],
        ["ancient", "scaly", "fierce", "golden", "winged"],
        ["taming", "drawing", "reading about", "dreaming about", "hatching"],
        ["🐉", "🔥"],
    ),
}

TIMES = ["this morning", "tonight", "today", "all weekend", "again", "right now", "at 3am", "every day", "lately"]
OPENERS = ["honestly", "ok so", "lol", "update:", "fun fact:", "hot take:", "", "", "", ""]


def _sentence(rng: random.Random, topic: str) -> str:
    _, nouns, adjs, verbs, _ = TOPICS[topic]
    n, n2, a, v, t = rng.choice(nouns), rng.choice(nouns), rng.choice(adjs), rng.choice(verbs), rng.choice(TIMES)
    patterns = [
        f"my {a} {n} is {v} the {n2} {t}",
        f"just spent {t} {v} {n}",
        f"nothing beats {a} {n} {t}",
        f"the {n} was so {a} {t}",
        f"i keep {v} {n} {t}",
        f"{a} {n} and {n2} is the best combo",
        f"we were {v} the {n} {t}",
        f"still thinking about that {a} {n}",
    ]
    return rng.choice(patterns)


def _question(rng: random.Random, topic: str) -> str:
    _, nouns, adjs, verbs, _ = TOPICS[topic]
    n, a, v = rng.choice(nouns), rng.choice(adjs), rng.choice(verbs)
    patterns = [
        f"does anyone else love {v} {n}?",
        f"what is your favourite {a} {n}?",
        f"is it weird to keep {v} {n} {rng.choice(TIMES)}?",
        f"who else is {v} the {n}?",
    ]
    return rng.choice(patterns)


def make_post(rng: random.Random, topic: str | None = None) -> str:
    """One post: a topic, one to three sentences, maybe a question, an exclamation or emoji."""
    if topic is None:
        names = list(TOPICS)
        topic = rng.choices(names, weights=[TOPICS[t][0] for t in names])[0]
    emoji = TOPICS[topic][4]
    length = rng.choices([1, 2, 3], weights=[0.5, 0.35, 0.15])[0]
    parts = []
    for i in range(length):
        s = _question(rng, topic) if rng.random() < 0.2 else _sentence(rng, topic)
        if i == 0 and (opener := rng.choice(OPENERS)):
            s = f"{opener} {s}"
        if not s.endswith("?"):
            s += rng.choice([".", ".", "!", "!!", ""])
        parts.append(s)
    text = " ".join(parts)
    if rng.random() < 0.35:
        text += " " + "".join(rng.choice(emoji) for _ in range(rng.choice([1, 1, 2, 3])))
    return text


_STORY_SUBJECTS = ["she", "he", "the old man", "the child", "a stranger", "the cat", "nobody", "the woman"]
_STORY_VERBS = ["opens", "finds", "hides", "burns", "reads", "breaks", "counts", "follows", "paints", "forgets"]
_STORY_OBJECTS = [
    "the lamps",
    "a letter",
    "the cards",
    "a key",
    "the window",
    "the door",
    "a map",
    "the river",
    "a red coat",
    "the clock",
    "a photograph",
    "the last card",
]
_STORY_TAILS = [
    "and the room goes dark",
    "and outside a bird starts singing",
    "but nothing happens",
    "and laughs quietly",
    "and the house begins to hum",
    "while the sun stops moving",
    "and someone knocks three times",
    "and it is suddenly winter",
    "and the cards are all blank",
    "and the floor is covered in sand",
]


def make_story_line(rng: random.Random) -> str:
    """One line of a story."""
    subject, verb = rng.choice(_STORY_SUBJECTS), rng.choice(_STORY_VERBS)
    s = f"{subject} {verb} {rng.choice(_STORY_OBJECTS)} {rng.choice(_STORY_TAILS)}."
    return s[0].upper() + s[1:]


def make_story(rng: random.Random, opening: str) -> str:
    """An exquisite-corpse transcript in the exact format story mode prompts with."""
    lines = [INSTRUCTION, opening]
    for i in range(rng.randint(2, 6)):
        speaker = HUMAN if i % 2 == 0 else MACHINE
        lines.append(f"{speaker}: {make_story_line(rng)}")
    return "\n".join(lines) + "\n"


def make_corpus(n_posts: int, *, seed: int = 0, story_fraction: float = 0.08) -> list[str]:
    """Documents for pretraining: mostly posts (one line each), some story transcripts."""
    from bot.config.settings import DEFAULT_OPENING

    rng = random.Random(seed)
    docs = []
    for _ in range(n_posts):
        if rng.random() < story_fraction:
            opening = DEFAULT_OPENING if rng.random() < 0.5 else make_story_line(rng)
            docs.append(make_story(rng, opening))
        else:
            docs.append(make_post(rng) + "\n")
    return docs
