"""Privacy and the audit trail: forget-me across every table, the opt-out, my-data export, retention, audit rows.

The opt-out is kept as a keyed hash of the member id (HMAC-SHA256 with a random key stored in this database), so
after `/forget-me` no row holds the member's id, and yet a replayed reaction or a catch-up pass can still tell the
member asked to be left out. The set of opted-out hashes is small and mirrored in memory: live events check it
without a query. Every writer that records a member checks that set under the write lock, and `forget_member`
updates it inside its transaction, so a write either lands before the forget (and is deleted by it) or sees the
opt-out. After a forget, the WAL is checkpointed and truncated: the old pages holding the member's words do not
stay in the -wal file (SQLite). On PostgreSQL the deleted row versions stay in the table's pages until a VACUUM
reclaims them (autovacuum, or `vacuum()` after retention), and in the server's WAL until its next checkpoint
recycles the segment: the server's, not ours, to manage.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sqlite3
from typing import Any

from bot.storage._db import StorageBase

log = logging.getLogger("bot.storage")

REMOVED = "[removed at the member's request]"
FORGOTTEN = "[a forgotten member]"
_USER = re.compile(r"^user:(\d+)$")  # how trials.decided_by named an operator before it held a label


class PrivacyMixin(StorageBase):
    """Forget, opt out, export, prune; and the audit trail."""

    async def migrate(self) -> int:
        """Apply migrations, then load the privacy key and the opted-out set."""
        version = await super().migrate()
        async with self.db.execute("SELECT key FROM privacy_key WHERE id = 1") as cur:
            row = await cur.fetchone()
        self._privacy_key = str(row[0]).encode() if row else b""
        async with self.db.execute("SELECT member_hash FROM opt_outs") as cur:
            self._opted_out_hashes = {str(r[0]) for r in await cur.fetchall()}
        await self._label_old_deciders()
        return version

    async def _label_old_deciders(self) -> None:
        """Trials decided before labels were stored hold 'user:<id>': store the label instead (once, idempotent)."""
        async with self.db.execute("SELECT id, decided_by FROM trials WHERE decided_by LIKE 'user:%'") as cur:
            rows = [(int(i), m) for i, d in await cur.fetchall() if (m := _USER.match(str(d)))]
        if rows:
            async with self.transaction():
                for trial_id, m in rows:
                    member = int(m.group(1))
                    label = FORGOTTEN if self._opted_out(member) else self.member_label(member)
                    await self.db.execute("UPDATE trials SET decided_by = ? WHERE id = ?", (label, trial_id))

    def is_opted_out(self, member_id: int) -> bool:
        """True if the member used /forget-me (and has not opted back in)."""
        return self._opted_out(member_id)

    async def opt_in(self, member_id: int) -> bool:
        """Lift a member's opt-out; True if there was one."""
        digest = self.member_hash(member_id)
        async with self.transaction():
            cur = await self.db.execute("DELETE FROM opt_outs WHERE member_hash = ?", (digest,))
        self._opted_out_hashes.discard(digest)
        return cur.rowcount == 1

    async def forget_member(self, member_id: int, *, at: float = 0.0) -> dict[str, int]:
        """Delete or redact everything tied to a member, and record their opt-out, in one transaction.

        Returns what was done per kind of record (rows deleted or redacted).
        """
        mid = int(member_id)
        digest = self.member_hash(mid)
        done: dict[str, int] = {}
        was_out = digest in self._opted_out_hashes
        async with self.transaction(forgetting=True):
            # the opt-out first, under the write lock: a writer queued behind this transaction sees it
            self._opted_out_hashes.add(digest)
            try:
                done = await self._forget_rows(mid, digest, at)
            except BaseException:
                if not was_out:
                    self._opted_out_hashes.discard(digest)  # rolled back: the member is not opted out after all
                raise
        await self.checkpoint()
        return done

    async def _forget_rows(self, mid: int, digest: str, at: float) -> dict[str, int]:
        """The statements of `forget_member`, inside its transaction."""
        done: dict[str, int] = {}
        # prompts of machine answers that followed the member's lines, or every answer of a story whose opening
        # they wrote: those prompts hold their words. Blank them and keep the posts out of training.
        cur = await self.db.execute(
            """UPDATE posts SET prompt = '', prompt_ids = '[]', redacted = 1
               WHERE redacted = 0 AND id IN (
                   SELECT m.post_id FROM story_lines m JOIN story_lines h ON h.story_id = m.story_id
                   WHERE h.member_id = ? AND m.post_id IS NOT NULL AND m.seq > h.seq
                   UNION
                   SELECT m.post_id FROM story_lines m JOIN stories s ON s.id = m.story_id
                   WHERE s.started_by = ? AND s.opening_custom = 1 AND m.post_id IS NOT NULL)""",
            (mid, mid),
        )
        done["prompts redacted"] = cur.rowcount
        for table in ("votes", "reaction_events", "replies"):
            cur = await self.db.execute(f"DELETE FROM {table} WHERE member_id = ?", (mid,))
            done[table.replace("_", " ")] = cur.rowcount
        cur = await self.db.execute(
            "UPDATE story_lines SET text = ?, member_id = NULL WHERE member_id = ?", (REMOVED, mid)
        )
        done["story lines"] = cur.rowcount
        cur = await self.db.execute(
            "UPDATE stories SET opening = CASE WHEN opening_custom = 1 THEN ? ELSE opening END, started_by = NULL "
            "WHERE started_by = ?",
            (REMOVED, mid),
        )
        done["stories started"] = cur.rowcount
        text = str(mid)
        runs = 0
        instr = self.dialect.instr
        for column in ("reason", "message"):
            cur = await self.db.execute(
                f"UPDATE training_runs SET {column} = replace({column}, ?, ?) WHERE {instr(column, '?')} > 0",
                (text, FORGOTTEN, text),
            )
            runs += cur.rowcount
        done["training runs"] = runs
        cur = await self.db.execute(
            "UPDATE audit_log SET actor_id = NULL, detail = replace(detail, ?, ?) "
            f"WHERE actor_id = ? OR {instr('detail', '?')} > 0",
            (text, FORGOTTEN, mid, text),
        )
        done["audit entries"] = cur.rowcount
        cur = await self.db.execute(
            "UPDATE trials SET decided_by = ? WHERE decided_by IN (?, ?)",
            (FORGOTTEN, self.member_label(mid), f"user:{mid}"),
        )
        done["trial decisions"] = cur.rowcount
        await self.db.execute(
            "INSERT INTO opt_outs (member_hash, at) VALUES (?, ?) ON CONFLICT DO NOTHING", (digest, at)
        )
        return done

    async def checkpoint(self, *, tries: int = 20) -> bool:
        """Copy the WAL into the database and truncate it to zero bytes; False if readers kept it from finishing.

        In WAL mode a changed page's old image stays in the -wal file until a checkpoint reuses it: after a forget
        the member's words would still be readable there. A read still open on this connection or another process
        (the dashboard's reader) blocks it for a moment: try again a few times, then leave it to the next one.
        """
        if self.dialect.postgres:
            return True  # no -wal file of ours: the server's WAL segments are recycled by its own checkpoints
        for attempt in range(tries):
            try:
                async with self._write, self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)") as cur:
                    row = await cur.fetchone()
                if not (row and row[0]):
                    return True
            except sqlite3.OperationalError:  # 'database table is locked': a statement of ours is still reading
                pass
            await asyncio.sleep(0.01 * (attempt + 1))
        log.warning("storage: the WAL checkpoint was blocked by readers; the next forget or VACUUM runs it again")
        return False

    async def member_data(self, member_id: int) -> dict[str, Any]:
        """Everything held about a member, as plain JSON-able data (for /my-data): every table that holds their id,
        their words, or their label."""
        mid = int(member_id)
        text, label = str(mid), self.member_label(mid)
        instr = self.dialect.instr
        message = "COALESCE(message, '')"
        out: dict[str, Any] = {"member_id": text, "opted_out": self._opted_out(mid), "label": label}
        queries: dict[str, tuple[str, tuple[Any, ...], tuple[str, ...]]] = {
            "votes": (
                "SELECT p.message_id, v.emoji, v.at FROM votes v JOIN posts p ON p.id = v.post_id "
                "WHERE v.member_id = ? ORDER BY v.at",
                (mid,),
                ("message_id", "emoji", "at"),
            ),
            "reaction_events": (
                "SELECT p.message_id, e.emoji, e.action, e.at FROM reaction_events e "
                "JOIN posts p ON p.id = e.post_id WHERE e.member_id = ? ORDER BY e.id",
                (mid,),
                ("message_id", "emoji", "action", "at"),
            ),
            "replies": (
                "SELECT r.message_id, p.message_id, r.length, r.at FROM replies r "
                "JOIN posts p ON p.id = r.post_id WHERE r.member_id = ? ORDER BY r.at",
                (mid,),
                ("message_id", "replied_to_message_id", "length", "at"),
            ),
            "story_lines": (
                "SELECT l.story_id, l.seq, l.text, l.at FROM story_lines l WHERE l.member_id = ? ORDER BY l.at",
                (mid,),
                ("story_id", "seq", "text", "at"),
            ),
            "stories_started": (
                "SELECT id, channel_id, CASE WHEN opening_custom = 1 THEN opening ELSE NULL END, "
                "started_at FROM stories WHERE started_by = ? ORDER BY id",
                (mid,),
                ("story_id", "channel_id", "opening", "at"),
            ),
            # the machine's answers whose prompts hold the member's lines or opening (the same rule forget uses);
            # only which ones: a prompt holds other members' lines of the story too
            "story_prompts": (
                """SELECT p.message_id, p.created_at FROM posts p WHERE p.redacted = 0 AND p.id IN (
                       SELECT m.post_id FROM story_lines m JOIN story_lines h ON h.story_id = m.story_id
                       WHERE h.member_id = ? AND m.post_id IS NOT NULL AND m.seq > h.seq
                       UNION
                       SELECT m.post_id FROM story_lines m JOIN stories s ON s.id = m.story_id
                       WHERE s.started_by = ? AND s.opening_custom = 1 AND m.post_id IS NOT NULL) ORDER BY p.id""",
                (mid, mid),
                ("message_id", "at"),
            ),
            "audit": (
                f"SELECT action, detail, at FROM audit_log WHERE actor_id = ? OR {instr('detail', '?')} > 0 "
                "ORDER BY id",
                (mid, text),
                ("action", "detail", "at"),
            ),
            "training_runs": (
                "SELECT id, reason, message, started_at FROM training_runs "
                f"WHERE {instr('reason', '?')} > 0 OR {instr(message, '?')} > 0 ORDER BY id",
                (text, text),
                ("run_id", "reason", "message", "at"),
            ),
            "trial_decisions": (
                "SELECT id, verdict, ended_at FROM trials WHERE decided_by IN (?, ?) ORDER BY id",
                (label, f"user:{mid}"),
                ("trial_id", "verdict", "at"),
            ),
        }
        for key, (sql, args, columns) in queries.items():
            async with self.db.execute(sql, args) as cur:
                rows = await cur.fetchall()
            # ids as strings: JSON readers lose precision on 64-bit integers
            out[key] = [
                {c: str(v) if c.endswith("_id") and v is not None else v for c, v in zip(columns, r, strict=True)}
                for r in rows
            ]
        return out

    async def prune(self, *, older_than: float) -> dict[str, int]:
        """Delete raw reaction events and replies older than a time whose post was already trained on."""
        done: dict[str, int] = {}
        async with self.transaction():
            for table in ("reaction_events", "replies"):
                cur = await self.db.execute(
                    f"DELETE FROM {table} WHERE at < ? "
                    "AND post_id IN (SELECT id FROM posts WHERE trained_at IS NOT NULL)",
                    (older_than,),
                )
                done[table] = cur.rowcount
        return done

    async def vacuum(self) -> None:
        """Rebuild the database file so deleted rows leave no trace on disk (and the file shrinks)."""
        async with self._write:
            # PostgreSQL: VACUUM (not FULL, which would lock every table for minutes) makes the deleted row versions'
            # space reusable; on SQLite the file is rebuilt without them
            await self.db.execute("VACUUM")
        await self.checkpoint()  # in WAL mode VACUUM writes the whole database into the -wal file first

    # --- audit trail -------------------------------------------------------------------------------------------------

    async def add_audit(
        self, action: str, *, actor_id: int | None, guild_id: int | None, detail: str = "", at: float
    ) -> int:
        """Record who did what (an operator or moderator action); return the row id.

        An actor who used /forget-me is recorded as nobody: the check runs under the write lock, as forget does.
        """
        async with self.transaction():
            if actor_id is not None and self._opted_out(actor_id):
                detail = detail.replace(str(int(actor_id)), FORGOTTEN)
                actor_id = None
            cur = await self.db.execute(
                "INSERT INTO audit_log (at, guild_id, actor_id, action, detail) VALUES (?, ?, ?, ?, ?) RETURNING id",
                (at, guild_id, actor_id, action, detail),
            )
            (row,) = await cur.fetchall()
        return int(row[0])

    async def audit_entries(self, limit: int = 50) -> list[dict[str, Any]]:
        """The latest audit rows, newest first; `actor` is how to show who: a member's label, never the id.

        A row without an actor is the dashboard's, unless its action is a slash command: then its actor was a
        member who asked to be forgotten.
        """
        async with self.db.execute(
            "SELECT id, at, guild_id, actor_id, action, detail FROM audit_log ORDER BY id DESC LIMIT ?", (limit,)
        ) as cur:
            rows = await cur.fetchall()
        keys = ("id", "at", "guild_id", "actor_id", "action", "detail")
        out = [dict(zip(keys, r, strict=True)) for r in rows]
        for e in out:
            if e["actor_id"] is not None:
                e["actor"] = self.member_label(int(e["actor_id"]))
            else:
                e["actor"] = FORGOTTEN if str(e["action"]).startswith("/") else "dashboard"
        return out


def dump_json(data: dict[str, Any]) -> bytes:
    """The /my-data file's bytes."""
    return json.dumps(data, indent=2, ensure_ascii=False).encode("utf-8")
