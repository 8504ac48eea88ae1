"""A small Discord-compatible server on 127.0.0.1 for end-to-end tests: REST under /api/v10 and a gateway websocket.

The unmodified discord.py client talks to it: point `discord.http.Route.BASE` at `base_url` and
`DiscordWebSocket.DEFAULT_GATEWAY` at `gateway_url`. It keeps just enough state (two guilds, more on request with
`add_guild`, their channels, roles and members, messages, reactions, interaction responses) for Kilroy's scenarios,
and records every request with the token that made it.

It shards as Discord does: a connection IDENTIFYs with `shard: [id, count]`, its READY lists only the guilds of
that shard (`(guild_id >> 22) % count`), and every event of a guild goes only to the connection holding its shard
(events without a guild go to shard 0's). `GET /gateway/bot` recommends `shard_count` shards. Several bot
processes (several `kilroy run`) can be connected at once.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import json
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from aiohttp import WSMsgType, web

GUILD_ID = 1000
CHANNEL_ID = 2000
APP_ID = 3000
BOT_ID = 3000  # a bot user shares its application's id
OWNER_ID = 4000
MODERATOR_ROLE = 5000
OPERATOR_ID = 6001
MEMBER_ID = 6002
MODERATOR_ID = 6003
OTHER_BOT_ID = 6999
# a second server Kilroy was invited to, whose owner is nobody special in the first
GUILD2_ID = 1100
CHANNEL2_ID = 2100
OWNER2_ID = 4100
ADMIN_PERMS = str(1 << 3)
EVERYONE_PERMS = str(
    (1 << 10) | (1 << 11) | (1 << 6) | (1 << 16) | (1 << 15) | (1 << 14)
)  # view/send/react/history/files/embed

_ids = itertools.count(900_000_000_000_000_000)


def snowflake() -> int:
    """A fresh id, increasing like Discord's."""
    return next(_ids)


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


def user(uid: int, name: str, *, bot: bool = False) -> dict[str, Any]:
    return {"id": str(uid), "username": name, "discriminator": "0", "global_name": name, "avatar": None, "bot": bot}


def member(uid: int, name: str, *, roles: tuple[int, ...] = (), bot: bool = False) -> dict[str, Any]:
    return {
        "user": user(uid, name, bot=bot),
        "roles": [str(r) for r in roles],
        "joined_at": now_iso(),
        "deaf": False,
        "mute": False,
        "flags": 0,
    }


def shard_of(guild_id: int, shard_count: int) -> int:
    """Discord's rule: the shard a guild's events travel on."""
    return (guild_id >> 22) % shard_count


def guild_on_shard(shard: int, shard_count: int, n: int = 0) -> int:
    """A guild id (the `n`-th) whose events travel on `shard` of `shard_count`."""
    return ((n * shard_count + shard) << 22) | (1000 + n)


@dataclass
class Request:
    method: str
    path: str
    body: Any
    token: str = ""  # the Authorization header's token: which bot process made the request


@dataclass
class Connection:
    """One gateway socket, and the shard its IDENTIFY asked for (None: an unsharded client)."""

    ws: web.WebSocketResponse
    shard: tuple[int, int] | None = None
    seq: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def holds(self, guild_id: int | None) -> bool:
        """True if this connection receives the guild's events (no guild: shard 0's)."""
        if self.shard is None:
            return True
        shard, count = self.shard
        return shard == (0 if guild_id is None else shard_of(guild_id, count))


@dataclass
class FakeDiscord:
    """The server; start() binds a free port on loopback."""

    requests: list[Request] = field(default_factory=list)
    messages: dict[int, dict[str, Any]] = field(default_factory=dict)
    reactions: dict[int, dict[str, list[int]]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(list)))
    callbacks: dict[int, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    webhook_messages: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    original_edits: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    rate_limit_next_posts: int = 0
    left_guilds: list[int] = field(default_factory=list)
    gateway_down: bool = False  # refuse gateway connections (an outage), see drop_gateway()
    shard_count: int = 1  # what GET /gateway/bot recommends
    port: int = 0

    def __post_init__(self) -> None:
        self.members2 = {
            BOT_ID: member(BOT_ID, "kilroy", bot=True, roles=(7100,)),
            OWNER2_ID: member(OWNER2_ID, "owner2"),
        }
        self.members = {
            BOT_ID: member(BOT_ID, "kilroy", bot=True, roles=(7000,)),
            OWNER_ID: member(OWNER_ID, "owner"),
            OPERATOR_ID: member(OPERATOR_ID, "operator"),
            MEMBER_ID: member(MEMBER_ID, "member"),
            MODERATOR_ID: member(MODERATOR_ID, "moderator", roles=(MODERATOR_ROLE,)),
            OTHER_BOT_ID: member(OTHER_BOT_ID, "otherbot", bot=True),
        }
        self._conns: list[Connection] = []  # open gateway sockets that have identified (or resumed)
        self._identified = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._sockets: list[web.WebSocketResponse] = []
        self.extra_guilds: dict[int, dict[str, Any]] = {}  # added with add_guild, by id
        self.channel_guild: dict[int, int] = {CHANNEL_ID: GUILD_ID, CHANNEL2_ID: GUILD2_ID}
        self.ready_gate = asyncio.Event()  # cleared: IDENTIFY is accepted but READY waits (a slow Discord)
        self.ready_gate.set()

    # --- lifecycle ---------------------------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v10"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/gateway", self._gateway)
        app.router.add_route("*", "/api/v10/{tail:.*}", self._rest)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        for ws in list(self._sockets):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    # --- gateway -----------------------------------------------------------------------------------------------------

    async def drop_gateway(self) -> None:
        """An outage: close the bot's gateway sockets and refuse new ones until `gateway_down` is cleared."""
        self.gateway_down = True
        for ws in list(self._sockets):
            await ws.close(code=4000)

    async def drop_shard(self, shard: int) -> None:
        """One shard's outage: close the sockets of that shard only and refuse new sockets until `gateway_down` is
        cleared (the other shards' open sockets go on)."""
        self.gateway_down = True
        for conn in list(self._conns):
            if conn.shard is not None and conn.shard[0] == shard:
                await conn.ws.close(code=4000)

    @property
    def shards_connected(self) -> list[tuple[int, int] | None]:
        """The shard of every identified connection, as its IDENTIFY gave it."""
        return [c.shard for c in self._conns if not c.ws.closed]

    async def _gateway(self, request: web.Request) -> web.StreamResponse:
        if self.gateway_down:
            return web.Response(status=503, text="gateway down")
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        self._sockets.append(ws)
        self._identified.clear()
        conn = Connection(ws)
        await ws.send_str(json.dumps({"op": 10, "d": {"heartbeat_interval": 41250}}))
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                data = json.loads(msg.data)
                if data["op"] == 1:
                    await self._send(conn, {"op": 11})
                elif data["op"] in (2, 6):  # IDENTIFY (or RESUME, answered as a fresh session of the same shard)
                    conn.shard = _shard_asked(data["d"])
                    if self.ready_gate.is_set():
                        await self._ready(conn)
                    else:
                        self._held = asyncio.create_task(self._ready_when_open(conn))
        finally:
            self._sockets.remove(ws)
            if conn in self._conns:
                self._conns.remove(conn)
        return ws

    async def _ready_when_open(self, conn: Connection) -> None:
        await self.ready_gate.wait()
        await self._ready(conn)

    async def _send(self, conn: Connection, payload: dict[str, Any]) -> None:
        async with conn.lock:
            await conn.ws.send_str(json.dumps(payload))

    def all_guilds(self) -> list[dict[str, Any]]:
        """Every guild the bot is in, as GUILD_CREATE carries it."""
        return [self.guild(), self.guild2(), *(dict(g) for g in self.extra_guilds.values())]

    async def _ready(self, conn: Connection) -> None:
        guilds = [g for g in self.all_guilds() if conn.holds(int(g["id"]))]
        shard_id = f"{conn.shard[0]}-{conn.shard[1]}" if conn.shard else "all"
        ready: dict[str, Any] = {
            "v": 10,
            "user": user(BOT_ID, "kilroy", bot=True),
            "guilds": [{"id": g["id"], "unavailable": True} for g in guilds],
            "session_id": f"session-{shard_id}",
            "resume_gateway_url": self.gateway_url,
            "application": {"id": str(APP_ID), "flags": 0},
            "private_channels": [],
        }
        if conn.shard is not None:
            ready["shard"] = list(conn.shard)
        # a new session of a shard ends its older one: Discord sends the shard's events to the newest socket only
        self._conns = [c for c in self._conns if c.shard != conn.shard] + [conn]
        await self._send_event(conn, "READY", ready)
        for g in guilds:
            await self._send_event(conn, "GUILD_CREATE", g)
        self._identified.set()

    async def wait_identified(self) -> None:
        await asyncio.wait_for(self._identified.wait(), 10)

    async def _send_event(self, conn: Connection, event: str, data: dict[str, Any]) -> None:
        conn.seq += 1
        await self._send(conn, {"op": 0, "t": event, "s": conn.seq, "d": data})

    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        """Send a gateway event (op 0) to the bot: to the connection holding its guild's shard."""
        guild = data.get("guild_id") or (data.get("id") if event.startswith("GUILD_") else None)
        for conn in list(self._conns):
            if not conn.ws.closed and conn.holds(int(guild) if guild else None):
                await self._send_event(conn, event, data)

    def add_guild(self, guild_id: int, channel_id: int, name: str = "") -> None:
        """One more guild the bot is in: its own channel, @everyone and bot roles, the bot and its owner as members
        (sent to a connection that identifies afterwards)."""
        g = self.guild2()
        role = snowflake()
        g.update(
            id=str(guild_id),
            name=name or f"server {guild_id}",
            owner_id=str(OWNER2_ID),
            roles=[_role(guild_id, "@everyone", EVERYONE_PERMS, 0), _role(role, "kilroy", ADMIN_PERMS, 1)],
            channels=[_channel(channel_id, guild_id, f"general-{guild_id}")],
            members=[member(BOT_ID, "kilroy", bot=True, roles=(role,)), member(OWNER2_ID, "owner2")],
            member_count=2,
        )
        self.extra_guilds[guild_id] = g
        self.channel_guild[channel_id] = guild_id

    def posts_in(self, channel_id: int) -> list[dict[str, Any]]:
        """The bot's messages in one channel."""
        return [m for m in self.posts_by_bot() if m["channel_id"] == str(channel_id)]

    def tokens_posting_in(self, channel_id: int) -> set[str]:
        """The tokens (bot processes) that sent a message into a channel."""
        path = f"/channels/{channel_id}/messages"
        return {r.token for r in self.requests if r.method == "POST" and r.path == path}

    def guild(self) -> dict[str, Any]:
        return {
            "id": str(GUILD_ID),
            "name": "Test server",
            "owner_id": str(OWNER_ID),
            "icon": None,
            "features": [],
            "roles": [
                _role(GUILD_ID, "@everyone", EVERYONE_PERMS, 0),
                _role(7000, "kilroy", ADMIN_PERMS, 1),
                _role(MODERATOR_ROLE, "mods", "0", 2),
            ],
            "channels": [
                {
                    "id": str(CHANNEL_ID),
                    "type": 0,
                    "name": "general",
                    "position": 0,
                    "permission_overwrites": [],
                    "guild_id": str(GUILD_ID),
                }
            ],
            "members": list(self.members.values()),
            "emojis": [],
            "stickers": [],
            "member_count": len(self.members),
            "large": False,
            "unavailable": False,
            "presences": [],
            "voice_states": [],
            "threads": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "joined_at": now_iso(),
            "premium_tier": 0,
            "preferred_locale": "en-US",
            "mfa_level": 0,
            "verification_level": 0,
            "explicit_content_filter": 0,
            "default_message_notifications": 0,
            "nsfw_level": 0,
            "system_channel_flags": 0,
        }

    def guild2(self) -> dict[str, Any]:
        """The second server: its own owner, channel and roles."""
        g = self.guild()
        g.update(
            id=str(GUILD2_ID),
            name="Other server",
            owner_id=str(OWNER2_ID),
            roles=[_role(GUILD2_ID, "@everyone", EVERYONE_PERMS, 0), _role(7100, "kilroy", ADMIN_PERMS, 1)],
            channels=[
                {
                    "id": str(CHANNEL2_ID),
                    "type": 0,
                    "name": "other-general",
                    "position": 0,
                    "permission_overwrites": [],
                    "guild_id": str(GUILD2_ID),
                }
            ],
            members=list(self.members2.values()),
            member_count=len(self.members2),
        )
        return g

    # --- event builders ----------------------------------------------------------------------------------------------

    async def react(
        self, message_id: int, user_id: int, emoji: str = "❤️", *, add: bool = True, dispatch: bool = True
    ) -> None:
        """A member adds or removes a reaction (recorded server-side; dispatched unless the bot is 'down')."""
        users = self.reactions[message_id][emoji]
        if add and user_id not in users:
            users.append(user_id)
        elif not add and user_id in users:
            users.remove(user_id)
        if not dispatch:
            return
        where = self.messages.get(message_id, {})
        data: dict[str, Any] = {
            "user_id": str(user_id),
            "channel_id": where.get("channel_id", str(CHANNEL_ID)),
            "message_id": str(message_id),
            "guild_id": where.get("guild_id", str(GUILD_ID)),
            "emoji": {"id": None, "name": emoji},
            "burst": False,
            "type": 0,
        }
        if add:
            data["member"] = self.members[user_id]
            data["message_author_id"] = (
                str(self.messages[message_id]["author"]["id"]) if message_id in self.messages else str(BOT_ID)
            )
        await self.dispatch("MESSAGE_REACTION_ADD" if add else "MESSAGE_REACTION_REMOVE", data)

    async def reply(self, to_message_id: int, user_id: int, content: str = "love it") -> int:
        mid = snowflake()
        channel = int(self.messages.get(to_message_id, {}).get("channel_id", CHANNEL_ID))
        m = self._message(mid, self.members[user_id]["user"], content, channel)
        m["message_reference"] = {
            "message_id": str(to_message_id),
            "channel_id": m["channel_id"],
            "guild_id": m["guild_id"],
        }
        m["member"] = {k: v for k, v in self.members[user_id].items() if k != "user"}
        m["type"] = 19
        await self.dispatch("MESSAGE_CREATE", m)
        return mid

    async def slash(
        self,
        user_id: int,
        command: str,
        sub: str | None = None,
        *,
        guild_id: int = GUILD_ID,
        channel_id: int = CHANNEL_ID,
        permissions: str = EVERYONE_PERMS,
        **options: Any,
    ) -> tuple[int, str]:
        """Invoke a slash command as a member (of `guild_id`, in `channel_id`); returns (interaction id, token)."""
        iid, token = snowflake(), f"token-{snowflake()}"
        opts = [{"name": k, "type": 3, "value": v} for k, v in options.items()]
        data: dict[str, Any] = {"id": str(snowflake()), "name": command, "type": 1, "guild_id": str(guild_id)}
        data["options"] = [{"name": sub, "type": 1, "options": opts}] if sub else opts
        await self.dispatch(
            "INTERACTION_CREATE",
            {
                "id": str(iid),
                "application_id": str(APP_ID),
                "type": 2,
                "data": data,
                "guild_id": str(guild_id),
                "channel_id": str(channel_id),
                "channel": {
                    "id": str(channel_id),
                    "type": 0,
                    "name": "general",
                    "guild_id": str(guild_id),
                    "position": 0,
                    "permission_overwrites": [],
                },
                "member": {
                    **(self.members if guild_id == GUILD_ID else self.members2)[user_id],
                    "permissions": permissions,
                },
                "token": token,
                "version": 1,
                "app_permissions": ADMIN_PERMS,
                "locale": "en-US",
                "guild_locale": "en-US",
                "entitlements": [],
                "authorizing_integration_owners": {},
                "context": 0,
                "attachment_size_limit": 8_000_000,
            },
        )
        return iid, token

    def _message(self, mid: int, author: dict[str, Any], content: str, channel_id: int = CHANNEL_ID) -> dict[str, Any]:
        return {
            "id": str(mid),
            "channel_id": str(channel_id),
            "guild_id": str(self.channel_guild.get(channel_id, GUILD_ID)),
            "author": author,
            "content": content,
            "timestamp": now_iso(),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": [],
            "embeds": [],
            "pinned": False,
            "type": 0,
            "flags": 0,
            "components": [],
        }

    def sent_bodies(self) -> list[dict[str, Any]]:
        """Every message body the bot sent or edited with text: posts, interaction answers, follow-ups, edits."""
        out = []
        for r in self.requests:
            if r.method not in ("POST", "PATCH") or not isinstance(r.body, dict):
                continue
            body = r.body.get("data") if r.path.startswith("/interactions/") else r.body
            if isinstance(body, dict) and body.get("content"):
                out.append(body)
        return out

    def posts_by_bot(self) -> list[dict[str, Any]]:
        return [m for m in self.messages.values() if m["author"]["id"] == str(BOT_ID)]

    # --- REST --------------------------------------------------------------------------------------------------------

    async def _rest(self, request: web.Request) -> web.StreamResponse:
        path = "/" + request.match_info["tail"]
        body: Any = None
        if request.can_read_body:
            if request.content_type.startswith("multipart/"):
                reader = await request.multipart()
                parts = {}
                async for part in reader:
                    raw = await part.read()
                    parts[part.name] = raw.decode(errors="replace") if part.name == "payload_json" else len(raw)
                body = json.loads(parts.get("payload_json", "{}"))
                body["_files"] = [k for k in parts if k != "payload_json"]
            else:
                text = await request.text()
                body = json.loads(text) if text else None
        token = request.headers.get("Authorization", "").removeprefix("Bot ")
        self.requests.append(Request(request.method, path, body, token))
        seg = path.strip("/").split("/")
        m = request.method

        if path == "/users/@me":
            return _json(user(BOT_ID, "kilroy", bot=True))
        if path == "/oauth2/applications/@me":
            return _json(
                {
                    "id": str(APP_ID),
                    "name": "kilroy",
                    "icon": None,
                    "description": "",
                    "bot_public": True,
                    "bot_require_code_grant": False,
                    "owner": user(OWNER_ID, "owner"),
                    "verify_key": "k",
                    "flags": 0,
                    "summary": "",
                    "team": None,
                }
            )
        if path in ("/gateway", "/gateway/bot"):
            return _json(
                {
                    "url": self.gateway_url,
                    "shards": self.shard_count,
                    "session_start_limit": {"total": 1000, "remaining": 1000, "reset_after": 0, "max_concurrency": 1},
                }
            )
        if seg[:3] == ["users", "@me", "guilds"] and len(seg) == 4 and m == "DELETE":
            self.left_guilds.append(int(seg[3]))
            return web.Response(status=204)
        if seg[0] == "applications" and seg[-1] == "commands" and m == "PUT":
            return _json(
                [{**c, "id": str(snowflake()), "application_id": str(APP_ID), "version": "1"} for c in body or []]
            )
        if seg[0] == "applications" and seg[-1] == "commands" and m == "GET":
            return _json([])
        if seg[0] == "channels" and len(seg) == 3 and seg[2] == "messages" and m == "POST":
            if self.rate_limit_next_posts > 0:
                self.rate_limit_next_posts -= 1
                return web.Response(
                    status=429,
                    body=json.dumps({"message": "You are being rate limited.", "retry_after": 0.05, "global": False}),
                    headers={"Content-Type": "application/json", "Via": "1.1 google", "X-RateLimit-Scope": "user"},
                )
            mid = snowflake()
            msg = self._message(mid, user(BOT_ID, "kilroy", bot=True), body.get("content") or "", int(seg[1]))
            self.messages[mid] = msg
            return _json(msg)
        if seg[0] == "channels" and len(seg) == 2 and m == "GET":
            cid = int(seg[1])
            if cid not in self.channel_guild:
                return _json({"message": "Unknown Channel", "code": 10003}, status=404)
            return _json(_channel(cid, self.channel_guild[cid], f"channel-{cid}"))
        if seg[0] == "channels" and len(seg) == 4 and seg[2] == "messages" and m == "GET":
            mid = int(seg[3])
            if mid not in self.messages:
                return _json({"message": "Unknown Message", "code": 10008}, status=404)
            msg = dict(self.messages[mid])
            msg["reactions"] = [
                {
                    "emoji": {"id": None, "name": e},
                    "count": len(us),
                    "count_details": {"burst": 0, "normal": len(us)},
                    "me": False,
                    "me_burst": False,
                    "burst_colors": [],
                }
                for e, us in self.reactions[mid].items()
                if us
            ]
            return _json(msg)
        if seg[0] == "channels" and len(seg) >= 6 and seg[4] == "reactions" and m == "GET":
            mid, emoji = int(seg[3]), unquote(seg[5])
            after = int(request.query.get("after", 0))
            users = [self.members[u]["user"] for u in sorted(self.reactions[mid][emoji]) if u > after]
            return _json(users[: int(request.query.get("limit", 100))])
        if seg[0] == "interactions" and seg[-1] == "callback":
            iid = int(seg[1])
            self.callbacks[iid].append(body)
            data = body.get("data") or {}
            return _json(
                {
                    "interaction": {
                        "id": str(iid),
                        "type": 2,
                        "response_message_loading": body.get("type") == 5,
                        "response_message_ephemeral": bool(data.get("flags", 0) & 64),
                    }
                }
            )
        if seg[0] == "webhooks" and len(seg) == 3 and m == "POST":
            token = seg[2]
            mid = snowflake()
            msg = self._message(mid, user(BOT_ID, "kilroy", bot=True), body.get("content") or "")
            msg["flags"] = body.get("flags", 0)
            msg["_files"] = body.get("_files", [])
            self.webhook_messages[token].append(msg)
            self.messages[mid] = msg
            return _json(msg)
        if seg[0] == "webhooks" and len(seg) == 5 and seg[4] == "@original":
            token = seg[2]
            if m == "PATCH":
                self.original_edits[token].append(body)
            msg = self._message(snowflake(), user(BOT_ID, "kilroy", bot=True), (body or {}).get("content") or "")
            return _json(msg)
        return _json({"message": f"fake discord: {m} {path} not implemented", "code": 0}, status=404)


def _role(rid: int, name: str, perms: str, position: int) -> dict[str, Any]:
    return {
        "id": str(rid),
        "name": name,
        "permissions": perms,
        "position": position,
        "color": 0,
        "hoist": False,
        "managed": False,
        "mentionable": False,
        "flags": 0,
    }


def _channel(cid: int, guild_id: int, name: str) -> dict[str, Any]:
    return {
        "id": str(cid),
        "type": 0,
        "name": name,
        "position": 0,
        "permission_overwrites": [],
        "guild_id": str(guild_id),
    }


def _shard_asked(d: dict[str, Any]) -> tuple[int, int] | None:
    """The shard an IDENTIFY asks for, or a RESUME's (from the session id READY gave it)."""
    if "shard" in d:
        return int(d["shard"][0]), int(d["shard"][1])
    session = str(d.get("session_id", ""))
    if session.count("-") == 2:
        _, shard, count = session.split("-")
        return int(shard), int(count)
    return None


def _json(data: Any, status: int = 200) -> web.Response:
    # discord.py's JSON detection wants exactly this content type
    return web.Response(status=status, body=json.dumps(data), headers={"Content-Type": "application/json"})
