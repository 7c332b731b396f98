"""``POST /v1/tokens``: an app's server, holding the API key, mints a short-lived scoped token for its
front end (:mod:`services.common.auth.scoped`). Only an API key mints (a token cannot, 403); the token
lives ``ttl_s`` (default ``token_default_ttl_s``, at most ``token_max_ttl_s``) and dies with the key:
revoking the key refuses its tokens within the key cache's invalidation (a KV watch, milliseconds).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi import APIRouter

from contracts.api.tokens import KIND_SCOPES, ROBOT_SCOPES, TokenCreate, TokenOut
from services.common.auth.scoped import mint_api_token
from services.common.http.problem import field_error, problem_responses, unprocessable
from services.gateway.deps import MinterDep, StateDep

router = APIRouter(prefix="/v1/tokens", tags=["tokens"])


def _check(body: TokenCreate, max_ttl_s: int) -> None:
    """422 for a lifetime over the limit, or a narrowing that narrows none of the scopes asked for."""
    errors = []
    if body.ttl_s is not None and body.ttl_s > max_ttl_s:
        errors.append(field_error(("body", "ttl_s"), f"at most {max_ttl_s} seconds"))
    if body.kinds is not None and not KIND_SCOPES & set(body.scopes):
        errors.append(field_error(("body", "kinds"), "kinds narrows jobs:write or sessions:write; ask for one"))
    if body.robot_id is not None and not ROBOT_SCOPES & set(body.scopes):
        errors.append(field_error(("body", "robot_id"), "robot_id narrows robots:write or robots:read; ask for one"))
    if errors:
        raise unprocessable("The token cannot be minted.", *errors)


@router.post(
    "",
    status_code=201,
    summary="Mint a scoped token",
    response_description="The token and what it may do; it is shown once.",
    responses=problem_responses(401, 403, 422),
)
async def create_token(body: TokenCreate, state: StateDep, principal: MinterDep) -> TokenOut:
    """A token with ``scopes`` (narrowed by ``kinds`` and ``robot_id``) acting for end user ``subject``;
    only an API key may mint one."""
    settings = state.settings
    _check(body, settings.token_max_ttl_s)
    ttl_s = body.ttl_s or settings.token_default_ttl_s
    issued = datetime.now(UTC).replace(microsecond=0)
    token = mint_api_token(
        settings.signing_secret.get_secret_value().encode(),
        principal,
        ttl_s,
        body.scopes,
        kinds=body.kinds,
        subject=body.subject,
        robot_id=body.robot_id,
        now=issued.timestamp(),
    )
    return TokenOut(
        token=token,
        expires_at=issued + timedelta(seconds=ttl_s),
        scopes=body.scopes,
        kinds=body.kinds,
        subject=body.subject,
        robot_id=body.robot_id,
    )
