"""A submit naming a completed upload reads no KV: a gateway keeps the records of the uploads it completed
or read completed, since those never change (``services/gateway/uploads/inputs.py``). A pending upload is
read at every submit (it may be completed meanwhile). A kept upload's file is still checked against its
seal at each submit (``tests/common/storage/test_upload_sealing.py``, on S3). A complete on the gateway
that created the upload reads no KV either: it writes over the pending record and revision kept then
(``services/gateway/uploads/routes.py``)."""

from __future__ import annotations

from pathlib import Path

from bench.harness.message_counter import Tally, counting
from contracts.ids import tenant_key
from contracts.streams import KV_UPLOADS
from contracts.subjects import Namespace
from services.common.nats.server.embedded import EmbeddedNats
from services.gateway.state import GatewayState
from tests.support.gateway import Gateway, Tenant, uploaded
from tests.support.lap import square_video


def upload_reads(tally: Tally, namespace: Namespace) -> int:
    """Reads of KV ``uploads`` in ``tally`` (a message get or a direct get of its stream)."""
    bucket = f"KV_{namespace.bucket(KV_UPLOADS)}"
    return sum(n for (kind, source), n in tally.sources.items() if kind.endswith(" get") and bucket in source)


async def submit(acme: Tenant, upload_id: str) -> str:
    created = await acme.http.post("/v1/jobs", json={"kind": "pose", "inputs": {"video": {"upload_id": upload_id}}})
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


async def test_a_completed_upload_is_read_from_kv_at_most_once_and_a_pending_one_at_every_submit(
    acme: Tenant, gateway: Gateway, nats_server: EmbeddedNats, namespace: Namespace, tmp_path: Path
) -> None:
    video = square_video(tmp_path / "lap.mp4", frames=8).read_bytes()
    state: GatewayState = gateway.app.state.gateway
    completed, pending = await uploaded(acme, video), await uploaded(acme, video)
    assert (await acme.http.post(f"/v1/uploads/{completed}/complete")).status_code == 200
    async with counting(nats_server.url) as counter:
        async with counter.window() as tally:
            await submit(acme, completed)  # completed by this gateway: kept since
            await submit(acme, completed)
        assert upload_reads(tally, namespace) == 0, tally.breakdown(30)

        state.completed_uploads.pop(tenant_key("acme", completed))  # as if another gateway completed it
        async with counter.window() as tally:
            await submit(acme, completed)  # read once, kept since
            await submit(acme, completed)
        assert upload_reads(tally, namespace) == 1, tally.breakdown(30)

        async with counter.window() as tally:
            await submit(acme, pending)
            await submit(acme, pending)
        assert upload_reads(tally, namespace) == 2, tally.breakdown(30)


async def test_a_complete_on_the_gateway_that_created_the_upload_reads_no_kv(
    acme: Tenant, gateway: Gateway, nats_server: EmbeddedNats, namespace: Namespace, tmp_path: Path
) -> None:
    video = square_video(tmp_path / "lap.mp4", frames=8).read_bytes()
    state: GatewayState = gateway.app.state.gateway
    created_here, created_elsewhere = await uploaded(acme, video), await uploaded(acme, video)
    state.pending_uploads.pop(tenant_key("acme", created_elsewhere))  # as if another gateway created it
    async with counting(nats_server.url) as counter:
        async with counter.window() as tally:
            assert (await acme.http.post(f"/v1/uploads/{created_here}/complete")).status_code == 200
        assert upload_reads(tally, namespace) == 0, tally.breakdown(30)
        async with counter.window() as tally:
            assert (await acme.http.post(f"/v1/uploads/{created_elsewhere}/complete")).status_code == 200
        assert upload_reads(tally, namespace) == 1, tally.breakdown(30)


async def test_a_kept_pending_record_another_gateway_completed_meanwhile_answers_that_completion(
    acme: Tenant, gateway: Gateway, tmp_path: Path
) -> None:
    video = square_video(tmp_path / "lap.mp4", frames=8).read_bytes()
    state: GatewayState = gateway.app.state.gateway
    upload_id = await uploaded(acme, video)
    key = tenant_key("acme", upload_id)
    kept = state.pending_uploads.get(key)
    assert kept is not None
    first = await acme.http.post(f"/v1/uploads/{upload_id}/complete")
    assert first.status_code == 200, first.text
    state.pending_uploads.put(key, kept)  # as if another gateway had completed it: this one kept it pending
    again = await acme.http.post(f"/v1/uploads/{upload_id}/complete")
    assert again.status_code == 200, again.text
    assert again.json() == first.json()  # the completion that won, not a second one
    assert state.pending_uploads.get(key) is None
