"""Dashboard views filtered by community (issue 24): a server's posts, its lineage's versions and runs."""

from __future__ import annotations

import json
import time

from bot.adapters.lineages import Lineages
from bot.domain.scoring import ScoreFormula
from bot.http import dashboard as views
from bot.http.dashboard import DashboardDeps
from bot.storage import NewPost
from tests.support.adapters import fake_adapter


async def test_views_filter_by_community(storage, tmp_path):
    now = time.time()
    lineages = Lineages(tmp_path / "adapters")
    for community, versions in (("g1", ["v0001", "v0002"]), ("g2", ["v0001"]), ("commons", ["v0001"])):
        for name in versions:
            fake_adapter(lineages.root / community, name)
        (lineages.root / community / "STATE.json").write_text(json.dumps({"current": versions[-1], "history": []}))
    posts = [(1, "g1/v0002"), (1, "g1/v0002"), (2, "g2/v0001"), (3, "commons/v0001")]
    for i, (guild, adapter) in enumerate(posts):
        await storage.add_post(
            NewPost(channel_id=guild, guild_id=guild, text=f"p{i}", adapter=adapter, created_at=now - 10 + i)
        )
    for community, adapter in (("g1", "v0002"), ("g2", "v0001")):
        run = await storage.start_run("nightly", at=now - 5, community=community)
        await storage.finish_run(run, status="done", at=now - 4, adapter=adapter, accepted=True, message=community)
    deps = DashboardDeps(
        storage=storage,
        store=lineages.store("commons"),
        formula=ScoreFormula(),
        serving=lambda: "commons/v0001",
        lineages=lineages,
    )
    assert views.communities_of(deps) == ["commons", "g1", "g2"]
    g1 = await views.overview(deps, community="g1")
    assert g1["serving"] == "g1/v0002" and g1["total_posts"] == 2 and g1["last_run"]["adapter"] == "g1/v0002"
    assert (await views.overview(deps))["total_posts"] == 4
    shown = await views.posts_view(deps, community="g2")
    assert [row["adapter"] for row in shown["table"]] == ["g2/v0001"]
    commons = await views.posts_view(deps, community="commons")  # the posts a commons adapter wrote
    assert [row["adapter"] for row in commons["table"]] == ["commons/v0001"]
    table = (await views.adapters_view(deps, community="g1"))["table"]
    assert [(r["name"], r["active"], r["gate"]) for r in table] == [
        ("v0002", True, "g1"),
        ("v0001", False, ""),
        ("base", False, "-"),
    ]
    assert [r["message"] for r in (await views.runs_view(deps, community="g2"))["table"]] == ["g2"]
    assert len((await views.runs_view(deps))["table"]) == 2


async def test_the_community_filter_reaches_the_views_and_a_bad_one_is_refused(app_env):
    from tests.http.test_server import BEARER

    client, *_ = app_env
    assert (await client.get("/posts?community=../x", headers=BEARER)).status == 400
    for path in ("/", "/posts", "/adapters", "/runs"):
        response = await client.get(f"{path}?community=g77", headers=BEARER)
        assert response.status == 200, path
    html = await (await client.get("/posts?community=g77", headers=BEARER)).text()
    assert "post number" not in html  # the seeded posts belong to no server
