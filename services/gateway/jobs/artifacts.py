"""A job's (or a session's) artifacts as clients see them: each live one with a fresh download URL."""

from __future__ import annotations

import logging
from datetime import timedelta

from contracts.envelope import utc_now
from contracts.job_parts import Artifact
from contracts.job_record import JobRecord
from services.common.auth.apikeys import Principal
from services.common.auth.scoped import stream_token
from services.common.storage import InvalidKeyError, check_result_key
from services.gateway.state import GatewayState

log = logging.getLogger(__name__)


async def signed_artifacts(state: GatewayState, record: JobRecord) -> list[Artifact]:
    """The record's artifacts not expired, each under the job's own results with a pre-signed GET URL (one
    outside them is listed without a URL, and logged)."""
    settings, ttl = state.settings, state.settings.signed_url_ttl_s
    expires_at = utc_now() + timedelta(seconds=ttl)
    artifacts = []
    for a in (a for a in record.artifacts if not a.expired):
        try:
            check_result_key(settings.storage_prefix, record.tenant, record.id, a.key)
        except InvalidKeyError:
            log.warning("job %s: artifact %r is outside the job's results: no URL", record.id, a.name)
            artifacts.append(a)
            continue
        url = await state.storage.presign_get(a.key, ttl, filename=a.name.rpartition("/")[2])
        artifacts.append(a.model_copy(update={"url": url, "expires_at": expires_at}))
    return artifacts


def events_token(state: GatewayState, record: JobRecord, viewer: Principal) -> str:
    """The stream token of ``record``'s events, minted for ``viewer`` (``urls.events``)."""
    settings = state.settings
    secret = settings.signing_secret.get_secret_value().encode()
    return stream_token(secret, viewer, record.id, settings.stream_token_ttl_s)
