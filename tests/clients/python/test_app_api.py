"""The App API verbs of both clients against the embedded stack, over real HTTP: a minted token (live),
sessions.list, robots.list / joints, jobs.cancel_many, kinds.list, usage.get."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from gpurelay_client import AsyncClient, Client, CreatedToken, NotFound, PermissionDenied

from tests.clients.python.stack import ThreadedStack

pytestmark = pytest.mark.timeout(120)


def test_tokens_create_mints_a_token_the_client_uses(stack: ThreadedStack, lap_video: Path) -> None:
    with Client(stack.url, api_key=stack.new_key("py-tokens")) as owner:
        before = datetime.now(UTC).replace(microsecond=0)  # expiry times are whole seconds
        minted = owner.tokens.create(["uploads:write", "jobs:write", "jobs:read"], subject="user-7", ttl_s=300)
        assert isinstance(minted, CreatedToken)
        assert (minted.scopes, minted.subject) == (["uploads:write", "jobs:write", "jobs:read"], "user-7")
        assert before + timedelta(seconds=300) <= minted.expires_at <= datetime.now(UTC) + timedelta(seconds=300)
        with Client(stack.url, token=minted.token) as browser_like:
            job = browser_like.jobs.create("lap_compare", inputs={"video": lap_video}, params={}, delay_s=3600)
            assert job.subject == "user-7"
            assert [j.id for j in browser_like.jobs.list()] == [job.id]
            with pytest.raises(PermissionDenied) as refused:
                browser_like.tokens.create(["jobs:read"])
            assert "cannot mint" in str(refused.value)
            assert browser_like.usage.get().quota.applies_to == "subject"


def test_the_reading_and_bulk_verbs(stack: ThreadedStack, lap_video: Path) -> None:
    with Client(stack.url, api_key=stack.new_key("py-catalog")) as client:
        kinds = client.kinds.list()
        assert [k.kind for k in kinds] == ["lap_compare", "splat", "vlm"]  # rows, as a list iterates
        assert kinds[0].params_schema["properties"]["downscale_width"]["default"] == 640
        session = client.sessions.start("vlm")
        try:
            page = client.sessions.list(kind="vlm")
            assert [s.id for s in page.items] == [session.id]
            assert client.sessions.list(kind="splat").items == []
        finally:
            session.close()
        client.robots.send_joint_batch("arm-py", [([0.1 * i] * 6, None) for i in range(5)])
        history = client.robots.joints("arm-py", limit=3)
        assert [s.sample.joint_angles[0] for s in history.items] == pytest.approx([0.0, 0.1, 0.2])
        rest = client.robots.joints("arm-py", cursor=history.next_cursor)
        assert ([len(rest.items)], rest.next_cursor) == ([2], None)
        assert [r.id for r in client.robots.list()] == ["arm-py"]
        held = [client.jobs.create("lap_compare", inputs={"video": lap_video}, delay_s=3600).id for _ in range(3)]
        by_id = client.jobs.cancel_many(held[:1])
        assert [(r.id, r.outcome) for r in by_id.results] == [(held[0], "requested")]
        with pytest.raises(TypeError):
            client.jobs.cancel_many(held, kind="lap_compare")
        usage = client.usage.get(group_by="kind")
        assert usage.total.jobs == 3
        assert usage.total.sessions == 1
        assert usage.quota.applies_to == "tenant"
        with pytest.raises(NotFound):
            client.sessions.get("job_0000000000000000000000000000000")


async def test_the_asyncio_twins(stack: ThreadedStack) -> None:
    async with AsyncClient(stack.url, api_key=stack.new_key("py-async-catalog")) as client:
        minted = await client.tokens.create(["jobs:read", "robots:read"], robot_id="arm-a")
        assert minted.scopes == ["jobs:read", "robots:read"]
        assert [k.kind for k in await client.kinds.list()] == ["lap_compare", "splat", "vlm"]
        assert (await client.sessions.list()).items == []
        assert (await client.robots.list()).items == []
        assert (await client.robots.joints("arm-a")).items == []
        assert (await client.jobs.cancel_many(kind="lap_compare")).results == []
        assert (await client.usage.get()).total.jobs == 0
