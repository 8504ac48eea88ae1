import pytest

from bot.adapters.serving import AdapterService
from bot.adapters.store import AdapterError, AdapterStore
from bot.app.checks import NotAllowed
from bot.engine.generator import Generator, SamplingParams
from bot.engine.model import load_base
from cogs.adapters import Adapters
from tests.support.adapters import make_adapter
from tests.support.discord_mocks import interaction, member, texts

pytestmark = pytest.mark.slow


@pytest.fixture
async def setup(tiny_settings):
    settings = tiny_settings(KILROY_OPERATOR_USER_IDS="7", KILROY_OPERATOR_ROLE_IDS="70")
    loaded = load_base(settings.model, settings.data_dir, device="cpu")
    store = AdapterStore(settings.adapters_dir)
    names = [make_adapter(loaded, store, 1), make_adapter(loaded, store, 2)]
    generator = Generator(loaded, SamplingParams(max_new_tokens=8))
    service = AdapterService(store, generator)
    await service.use(names[0])
    yield Adapters(settings=settings, adapters=service), service, names
    await generator.close()


async def test_use_refused_for_non_operator(setup):
    cog, service, names = setup
    with pytest.raises(NotAllowed):
        await cog.use.callback(cog, interaction(member(1)), names[1])
    assert service.active == names[0]


@pytest.mark.parametrize("who", ["user", "role", "owner"])
async def test_use_accepted_for_operator(setup, who):
    """Operators by user id, by role, or as the application owner switch the serving adapter."""
    cog, service, names = setup
    user = member(7) if who == "user" else member(2, roles=(70,)) if who == "role" else member(3)
    i = interaction(user, owner=(who == "owner"))
    await cog.use.callback(cog, i, names[1])
    assert service.active == names[1]
    assert "Now serving" in texts(i.followup.send)[-1]


@pytest.mark.parametrize("bad", ["../../etc", "v9999", "base/../x"])
async def test_bad_name_leaves_active_unchanged(setup, bad):
    cog, service, names = setup
    with pytest.raises(AdapterError):
        await cog.use.callback(cog, interaction(member(7)), bad)
    assert service.active == names[0]


async def test_rollback_and_list(setup):
    cog, service, names = setup
    await cog.use.callback(cog, interaction(member(7)), names[1])
    await cog.rollback.callback(cog, interaction(member(7)))
    assert service.active == names[0]
    i = interaction(member(7))
    await cog.list_.callback(cog, i)
    listing = texts(i.response.send_message)[-1]
    assert f"▶ `{names[0]}`" in listing and names[1] in listing
    choices = await cog._names(interaction(member(7)), "v000")
    assert {c.value for c in choices} == set(names)


async def test_autocomplete_answers_only_operators(setup):
    """Adapter names are operators' business: a member's autocomplete gets nothing."""
    cog, _, names = setup
    assert await cog._names(interaction(member(1)), "") == []
    assert {c.value for c in await cog._names(interaction(member(7)), "")} >= set(names)


async def test_operator_of_no_allowed_server_is_nobody(tiny_settings, setup):
    """Operator ids count only inside a server of KILROY_GUILD_IDS (and never in DMs)."""
    from bot.app.checks import is_operator

    settings = tiny_settings(KILROY_OPERATOR_USER_IDS="7", KILROY_GUILD_IDS="1")
    assert await is_operator(interaction(member(7), guild_id=1), settings.discord)
    assert not await is_operator(interaction(member(7), guild_id=2), settings.discord)
    assert not await is_operator(interaction(member(7), guild_id=None), settings.discord)


async def test_use_and_rollback_are_audited(setup, storage):
    """/adapter use and rollback leave a row naming who and what, and a line in the log channel."""
    from unittest.mock import AsyncMock, MagicMock

    import discord

    from tests.support.discord_mocks import fake_bot

    cog, service, names = setup
    bot = fake_bot()
    log_channel = MagicMock(spec=discord.TextChannel)
    log_channel.send = AsyncMock()
    bot.get_channel = MagicMock(return_value=log_channel)
    settings = cog.settings.replace(discord=cog.settings.discord.__class__(operator_user_ids=(7,), log_channel_id=99))
    audited = Adapters(settings=settings, adapters=service, storage=storage, bot=bot)
    await audited.use.callback(audited, interaction(member(7)), names[1])
    await audited.rollback.callback(audited, interaction(member(7)))
    rows = await storage.audit_entries()
    assert [(r["action"], r["actor_id"]) for r in rows] == [("/adapter rollback", 7), ("/adapter use", 7)]
    assert rows[1]["detail"] == names[1]
    sent = [c.args[0] for c in log_channel.send.await_args_list]
    assert sent[0].startswith("Audit: <@7> ran /adapter use")
    assert all(c.kwargs["allowed_mentions"].to_dict() == {"parse": []} for c in log_channel.send.await_args_list)
