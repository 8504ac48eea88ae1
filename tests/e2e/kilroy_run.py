"""Run the real `kilroy` console entry point against the fake Discord named by FAKE_DISCORD_URL.

Only the two discord.py endpoints are repointed (REST base and gateway); everything else is `kilroy <args>`.
"""

from __future__ import annotations

import os
import sys

import yarl
from discord.gateway import DiscordWebSocket
from discord.http import Route

from bot.cli.main import main

if __name__ == "__main__":
    base = os.environ["FAKE_DISCORD_URL"]
    Route.BASE = f"{base}/api/v10"
    DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(base.replace("http://", "ws://") + "/gateway")
    sys.exit(main(sys.argv[1:]))
