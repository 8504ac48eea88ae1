"""The connection layer's SQL translation and error messages (no server needed)."""

import pytest

from bot.storage._conn import POSTGRES, SQLITE, PostgresConnection, _rowcount, is_postgres_url, to_postgres


def test_placeholders_become_numbered_outside_literals_and_comments():
    sql = "SELECT '?', \"a?\" FROM t WHERE a = ? AND b = 'it''s ?' -- why?\n AND c IN (?, ?)"
    assert to_postgres(sql) == "SELECT '?', \"a?\" FROM t WHERE a = $1 AND b = 'it''s ?' -- why?\n AND c IN ($2, $3)"


def test_command_tags_give_the_rows_changed():
    assert (_rowcount("INSERT 0 1"), _rowcount("UPDATE 3"), _rowcount("DELETE 0"), _rowcount("BEGIN")) == (1, 3, 0, -1)


def test_the_dialects_name_their_differences():
    assert SQLITE.day("at") == "strftime('%Y-%m-%d', at, 'unixepoch')" and "to_char" in POSTGRES.day("at")
    assert SQLITE.instr("a", "?") == "instr(a, ?)" and POSTGRES.instr("a", "?") == "strpos(a, ?)"
    assert is_postgres_url("postgresql://x@h/d") and is_postgres_url("postgres://x@h/d")
    assert not is_postgres_url("data/kilroy.db") and not is_postgres_url(":memory:")


async def test_a_refused_connection_names_the_server_never_the_password():
    with pytest.raises(ConnectionError) as err:
        await PostgresConnection.connect("postgresql://kilroy:hunter2@127.0.0.1:1/kilroy")
    assert "127.0.0.1" in str(err.value) and "hunter2" not in str(err.value) and "***" in str(err.value)
