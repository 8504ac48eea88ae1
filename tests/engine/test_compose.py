"""Composing a post: what is sent and stored is the normalised text the filter checked (bot/engine/compose.py)."""

from bot.domain.safety import OutputFilter
from bot.engine.compose import compose_post
from bot.engine.generator import Sample


class Scripted:
    """Returns the given texts, two per call."""

    def __init__(self, texts):
        self.texts = list(texts)

    async def generate(self, n, **kw):
        return [Sample(self.texts.pop(0), "", (0,), (1,), "base", {}) for _ in range(n)]


async def test_post_text_is_the_checked_normalised_text():
    """An obfuscated invite is resampled; the post that goes out is normalised (invisible characters gone, spaces
    collapsed, full-width letters plain), exactly the text that passed."""
    morn = "\uff4d\uff4f\uff52\uff4e"  # full-width
    gen = Scripted(["join discord\u3002gg/abc", "d\u0456scord.gg/x", f"a\u200b  quiet {morn}", "spare"])
    f = OutputFilter()
    sample = await compose_post(gen, prompt="", output_filter=f, tries=2)
    assert sample is not None and sample.text == "a quiet morn"
    assert f.check(sample.text).ok and f.check(sample.text).text == sample.text
    assert f.resampled["invite"] == 2
