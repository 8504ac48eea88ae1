"""Privacy and the audit trail: forget-me across every table, the opt-out, my-data export, retention, audit rows.

The opt-out is kept as a keyed hash of the member id (HMAC-SHA256 with a random key stored in this database), so
after `/forget-me` no row holds the member's id, and yet a replayed reaction or a catch-up pass can still tell the
member asked to be left out. The set of opted-out hashes is small and mirrored in memory: live events check it
without a query.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from bot.storage._db import StorageBase

REMOVED = "[removed at the member's request]"
FORGOTTEN = "[a forgotten member]"


class PrivacyMixin(StorageBase):
    """Forget, opt out, export, prune; and the audit trail."""

    def __init__(self, db: Any) -> None:
        super().__init__(db)
        self._privacy_key = b""
        self._opted_out_hashes: set[str] = set()

    async def migrate(self) -> int:
        """Apply migrations, then load the privacy key and the opted-out set."""
        version = await super().migrate()
        # deleted rows are overwritten with zeros, not left readable in free pages until the next VACUUM
        await self.db.execute("PRAGMA secure_delete=ON")
        async with self.db.execute("SELECT key FROM privacy_key WHERE id = 1") as cur:
            row = await cur.fetchone()
        self._privacy_key = str(row[0]).encode() if row else b""
        async with self.db.execute("SELECT member_hash FROM opt_outs") as cur:
            self._opted_out_hashes = {str(r[0]) for r in await cur.fetchall()}
        return version

    def member_hash(self, member_id: int) -> str:
        """The keyed hash that stands for a member in the opt-out table."""
        return hmac.new(self._privacy_key, str(int(member_id)).encode(), hashlib.sha256).hexdigest()

    def _opted_out(self, member_id: int) -> bool:
        return self.member_hash(member_id) in self._opted_out_hashes

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
        async with self.transaction():
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
            for column in ("reason", "message"):
                cur = await self.db.execute(
                    f"UPDATE training_runs SET {column} = replace({column}, ?, ?) WHERE instr({column}, ?) > 0",
                    (text, FORGOTTEN, text),
                )
                runs += cur.rowcount
            done["training runs"] = runs
            cur = await self.db.execute(
                "UPDATE audit_log SET actor_id = NULL, detail = replace(detail, ?, ?) "
                "WHERE actor_id = ? OR instr(detail, ?) > 0",
                (text, FORGOTTEN, mid, text),
            )
            done["audit entries"] = cur.rowcount
            await self.db.execute(
                "INSERT INTO opt_outs (member_hash, at) VALUES (?, ?) ON CONFLICT DO NOTHING", (digest, at)
            )
        self._opted_out_hashes.add(digest)
        return done

    async def member_data(self, member_id: int) -> dict[str, Any]:
        """Everything held about a member, as plain JSON-able data (for /my-data)."""
        mid = int(member_id)
        out: dict[str, Any] = {"member_id": str(mid), "opted_out": self._opted_out(mid)}
        queries = {
            "votes": "SELECT p.message_id, v.emoji, v.at FROM votes v JOIN posts p ON p.id = v.post_id "
            "WHERE v.member_id = ? ORDER BY v.at",
            "reaction_events": "SELECT p.message_id, e.emoji, e.action, e.at FROM reaction_events e "
            "JOIN posts p ON p.id = e.post_id WHERE e.member_id = ? ORDER BY e.id",
            "replies": "SELECT r.message_id, p.message_id, r.length, r.at FROM replies r "
            "JOIN posts p ON p.id = r.post_id WHERE r.member_id = ? ORDER BY r.at",
            "story_lines": "SELECT l.story_id, l.seq, l.text, l.at FROM story_lines l WHERE l.member_id = ? "
            "ORDER BY l.at",
            "stories_started": "SELECT id, channel_id, CASE WHEN opening_custom = 1 THEN opening ELSE NULL END, "
            "started_at FROM stories WHERE started_by = ? ORDER BY id",
            "audit": "SELECT action, detail, at FROM audit_log WHERE actor_id = ? ORDER BY id",
        }
        columns = {
            "votes": ("message_id", "emoji", "at"),
            "reaction_events": ("message_id", "emoji", "action", "at"),
            "replies": ("message_id", "replied_to_message_id", "length", "at"),
            "story_lines": ("story_id", "seq", "text", "at"),
            "stories_started": ("story_id", "channel_id", "opening", "at"),
            "audit": ("action", "detail", "at"),
        }
        for key, sql in queries.items():
            async with self.db.execute(sql, (mid,)) as cur:
                rows = await cur.fetchall()
            # ids as strings: JSON readers lose precision on 64-bit integers
            out[key] = [
                {c: str(v) if c.endswith("_id") and v is not None else v for c, v in zip(columns[key], r, strict=True)}
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
            await self.db.execute("VACUUM")

    # --- audit trail -------------------------------------------------------------------------------------------------

    async def add_audit(
        self, action: str, *, actor_id: int | None, guild_id: int | None, detail: str = "", at: float
    ) -> int:
        """Record who did what (an operator or moderator action); return the row id."""
        async with self._write:
            cur = await self.db.execute(
                "INSERT INTO audit_log (at, guild_id, actor_id, action, detail) VALUES (?, ?, ?, ?, ?)",
                (at, guild_id, actor_id, action, detail),
            )
        assert cur.lastrowid is not None
        return cur.lastrowid

    async def audit_entries(self, limit: int = 50) -> list[dict[str, Any]]:
        """The latest audit rows, newest first."""
        async with self.db.execute(
            "SELECT id, at, guild_id, actor_id, action, detail FROM audit_log ORDER BY id DESC LIMIT ?", (limit,)
        ) as cur:
            rows = await cur.fetchall()
        keys = ("id", "at", "guild_id", "actor_id", "action", "detail")
        return [dict(zip(keys, r, strict=True)) for r in rows]


def dump_json(data: dict[str, Any]) -> bytes:
    """The /my-data file's bytes."""
    return json.dumps(data, indent=2, ensure_ascii=False).encode("utf-8")
