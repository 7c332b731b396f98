"""A session as clients see it (:class:`~contracts.api.sessions.SessionOut`): state, counts, cost so far, URLs.

``urls.events`` carries a stream token (as a job's does); ``urls.compat`` (splat) is a capability URL
under which the live-splat seed's routes answer with no other auth: its token names the tenant and
the session, and lives as long as the session may run plus ``session_compat_ttl_s``, so the seed's
read routes keep answering after the session ends (until its results expire).
"""

from __future__ import annotations

from datetime import timedelta

from contracts.api.sessions import SessionOut, SessionUrls
from contracts.envelope import utc_now
from contracts.job_parts import JobStatus
from contracts.job_record import JobRecord
from services.common.auth.apikeys import Principal
from services.common.auth.tokens import mint_token
from services.common.storage import InvalidKeyError, check_result_key
from services.gateway.jobs.artifacts import events_token, signed_artifacts
from services.gateway.sessions.intake import SessionIntake
from services.gateway.state import GatewayState


def compat_token(state: GatewayState, record: JobRecord) -> str:
    """The capability token of a splat session's seed-compatible routes."""
    settings = state.settings
    max_session_s = float(getattr(record.spec.params, "max_session_s", 3600.0))
    ttl = max_session_s + settings.session_compat_ttl_s
    secret = settings.signing_secret.get_secret_value().encode()
    return mint_token(secret, "compat", ttl, session=record.id, tenant=record.tenant)


def session_urls(state: GatewayState, record: JobRecord, viewer: Principal) -> SessionUrls:
    """Where to reach the session (``ply`` and ``compat`` for splat); ``events`` with a stream token minted
    for ``viewer``."""
    settings = state.settings
    token = events_token(state, record, viewer)
    base = f"{settings.url}/v1/sessions/{record.id}"
    ws_base = "ws" + base.removeprefix("http")
    splat = record.kind == "splat"
    return SessionUrls(
        self=base,
        events=f"{base}/events?token={token}",
        stream=f"{ws_base}/stream",
        frames=f"{base}/frames",
        stop=f"{base}/stop",
        reset=f"{base}/reset",
        cancel=f"{settings.url}/v1/jobs/{record.id}/cancel",
        recording=f"{base}/recording",
        replay=f"{base}/replay",
        ply=f"{base}/ply" if splat else None,
        compat=f"{settings.url}/compat/so100/{compat_token(state, record)}" if splat else None,
    )


async def session_out(state: GatewayState, intake: SessionIntake, record: JobRecord, viewer: Principal) -> SessionOut:
    """The client's view of ``record``: counts, the worker's figures, the latest snapshot's URL, its artifacts
    with download URLs, cost so far."""
    assert record.session is not None
    assert record.session_state is not None
    metrics = dict(record.progress.metrics)
    snapshot = record.session.snapshot
    if snapshot is not None and not snapshot.expired:
        try:
            check_result_key(state.settings.storage_prefix, record.tenant, record.id, snapshot.key)
            ttl = state.settings.signed_url_ttl_s
            url = await state.storage.presign_get(snapshot.key, ttl, filename=snapshot.name.rpartition("/")[2])
            snapshot = snapshot.model_copy(update={"url": url, "expires_at": utc_now() + timedelta(seconds=ttl)})
        except InvalidKeyError:
            pass
    running = record.timings.dispatched_at if record.status in (JobStatus.DISPATCHED, JobStatus.RUNNING) else None
    return SessionOut(
        id=record.id,
        kind=record.kind,
        status=record.status,
        state=record.session_state,
        subject=record.subject,
        attempt=record.attempt,
        ready_at=record.session.ready_at if record.session.ready_attempt == record.attempt else None,
        load_s=record.session.load_s if record.session.ready_attempt == record.attempt else None,
        resumes=record.session.resumes,
        robot_id=record.session.robot_id,
        frames_received=await intake.frames_received(record),
        frames_processed=int(metrics.get("frames_processed", 0)),
        frames_dropped=int(metrics.get("frames_dropped", 0)),
        metrics=metrics,
        snapshot=snapshot,
        artifacts=tuple(await signed_artifacts(state, record)),
        result=record.result,
        error=record.error,
        cost=record.cost.so_far(running, utc_now()),
        spec=record.spec,
        created_at=record.created_at,
        updated_at=record.updated_at,
        urls=session_urls(state, record, viewer),
    )
