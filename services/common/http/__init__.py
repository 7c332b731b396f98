"""HTTP plumbing shared by the gateway and the notifier (FastAPI apps).

``problem`` (RFC 9457 problem+json: the one owner of error responses), ``cors`` (the CORS allowlist),
``health`` (``/healthz`` and ``/readyz``), ``auth`` (the 401 with its Bearer challenge). The uvicorn
configuration of every server stays in :mod:`services.common.http_server`.
"""
