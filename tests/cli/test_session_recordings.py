"""``gpurelay session export|replay`` against the embedded stack: the file downloaded and readable, the
replay followed to its end and its comparison printed, a bad format the gateway's 422."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.cli.test_submit import invoke
from tests.e2e.support import SessionStack, record_when, settled
from tests.support.export_readers import echo_and_export_stack, mcap_counts
from tests.support.sessions import jpeg

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
async def stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[SessionStack]:
    async for running in echo_and_export_stack(tmp_path, monkeypatch):
        yield running


async def test_export_downloads_the_file_and_replay_prints_the_comparison(stack: SessionStack, tmp_path: Path) -> None:
    env, api = stack
    sid = (await api.post("/v1/sessions", json={"kind": "vlm"})).json()["id"]
    for i in range(3):
        sent = await api.post(f"/v1/sessions/{sid}/frames", content=jpeg(i), headers={"Content-Type": "image/jpeg"})
        assert sent.status_code == 202
    await record_when(env, sid, lambda r: r.session is not None and r.session.last_result_seq >= 3)
    assert (await api.post(f"/v1/sessions/{sid}/stop")).status_code == 202
    await settled(env, sid)
    cli = {
        "GPURELAY_URL": env["GPURELAY_URL"], "GPURELAY_API_KEY": env["GPURELAY_API_KEY"],
        "GPURELAY_DATA_DIR": str(tmp_path / "cli"), "COLUMNS": "250",
    }  # fmt: skip
    out = tmp_path / "out"
    out.mkdir()

    exported = await invoke(["session", "export", sid, "--format", "mcap", "-o", str(out)], cli)
    assert exported.exit_code == 0, exported.output
    path = Path(exported.stdout.split()[-1])
    assert path == out / f"{sid}.mcap"
    assert mcap_counts(path)["/camera/main"] == 3

    replayed = await invoke(["session", "replay", sid, "-p", "frame_buffer=2", "--speed", "max"], cli)
    assert replayed.exit_code == 0, replayed.output
    replay_id = replayed.stdout.split()[0]
    assert replay_id.startswith("job_")
    assert replay_id != sid
    rows = {line.split("│")[1].strip(): line for line in replayed.stdout.splitlines() if line.count("│") >= 3}
    assert rows["frames"].replace(" ", "").endswith("│3│3│")
    assert '{"frame_buffer": 2}' in rows["params changed"]

    refused = await invoke(["session", "export", sid, "--format", "avi"], cli)
    assert refused.exit_code == 1
    assert "422" in refused.output
