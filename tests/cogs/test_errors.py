import logging

from bot.adapters.store import InvalidAdapterName
from bot.app.bot import handle_app_command_error
from bot.app.checks import NotAllowed
from tests.support.discord_mocks import interaction, texts


async def test_permission_failure_is_ephemeral():
    i = interaction()
    await handle_app_command_error(i, NotAllowed("Only operators."))
    i.response.send_message.assert_awaited_once()
    assert i.response.send_message.call_args.kwargs["ephemeral"] is True
    assert texts(i.response.send_message) == ["Only operators."]


async def test_bad_input_after_defer_goes_to_followup():
    i = interaction()
    await i.response.defer()
    await handle_app_command_error(i, InvalidAdapterName("../x"))
    assert "not a valid adapter name" in texts(i.followup.send)[0]
    assert i.followup.send.call_args.kwargs["ephemeral"] is True


async def test_unexpected_error_logged_and_apologised(caplog):
    """A bug is logged with context; the member sees a short apology, not a traceback."""
    i = interaction()
    with caplog.at_level(logging.ERROR):
        await handle_app_command_error(i, ZeroDivisionError("division by zero"))
    (text,) = texts(i.response.send_message)
    assert "Sorry" in text and "ZeroDivision" not in text
    assert "ZeroDivisionError" in caplog.text


async def test_a_refusal_after_a_public_thinking_defer_is_private():
    """Discord makes the first followup after a defer replace the "thinking" message, with the defer's visibility:
    a refusal addressed to the member ("you asked Kilroy to forget you") would be shown to the channel. The thinking
    message is removed first, so the refusal is a new private message."""
    i = interaction()
    await i.response.defer(thinking=True)
    await handle_app_command_error(i, InvalidAdapterName("../x"))
    i.delete_original_response.assert_awaited_once()
    assert i.followup.send.call_args.kwargs["ephemeral"] is True


async def test_a_bug_after_a_defer_keeps_the_message():
    """An apology for a bug says nothing about the member: it simply replaces the thinking message."""
    i = interaction()
    await i.response.defer(thinking=True)
    await handle_app_command_error(i, ZeroDivisionError("division by zero"))
    i.delete_original_response.assert_not_awaited()
    assert "Sorry" in texts(i.followup.send)[0]
