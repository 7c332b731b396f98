"""Bounded label values of the metrics (:mod:`services.common.observability.metrics`): nothing a client or a job
chooses freely ever becomes a label value.

* HTTP: the method if it is a known one (else ``OTHER``); the route *template* of the matched route
  (``/v1/jobs/{job_id}``), ``unmatched`` when none matched (a scan of random paths adds one series).
* Event types: the registry's types (:class:`~contracts.events.registry.EventType`), else ``other``; a job
  event's type from its subject token.
* Webhook endpoints (:class:`EndpointLabels`): ``{tenant}/{endpoint id}`` for the first
  ``metrics_max_endpoints`` endpoints a process sees, ``other`` after; every per-job webhook is
  ``jobhooks``. Not hashed (a hash names nothing an operator can act on), not a running top-N
  (ranking needs a count per endpoint, unbounded, and series would change names as ranks move):
  the first N keep stable series, and an endpoint beyond them is still in ``other``, in
  ``gpurelay status`` and in its deliveries view (``GET /v1/webhooks/{id}/deliveries``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from contracts.events.registry import JOB_EVENT_TYPES, EventType
from contracts.subjects import event_token

OTHER = "other"
UNMATCHED = "unmatched"
JOB_HOOKS = "jobhooks"
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_TYPES = frozenset(t.value for t in EventType)
_BY_TOKEN = {t.partition(".")[2]: t.value for t in JOB_EVENT_TYPES}
_BY_TOKEN["completed"] = EventType.UPLOAD_COMPLETED.value


def method_label(method: str) -> str:
    """``method`` if it is a known HTTP method, else ``OTHER``."""
    return method if method in HTTP_METHODS else "OTHER"


def route_label(scope: Mapping[str, Any]) -> str:
    """The template of the route that handled a request (mount prefix included), or ``unmatched``."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if not isinstance(path, str) or not path or hasattr(route, "routes"):  # none, or a Mount none inside matched
        return UNMATCHED
    return str(scope.get("root_path", "")) + path


def event_type_label(value: str | None) -> str:
    """An envelope's ``type`` if it is a registered one, else ``other``."""
    return value if value in _TYPES else OTHER


def subject_event_label(subject: str) -> str:
    """The event type of a JOBS subject (``….jobs.{tenant}.{job}.{event}``, as stored with its slot token
    too; ``….uploads.….completed``)."""
    return _BY_TOKEN.get(event_token(subject), OTHER)


def status_class(status: int | None) -> str:
    """``2xx`` … ``5xx`` for an HTTP status, ``error`` for none (no answer)."""
    return f"{status // 100}xx" if status is not None and 100 <= status < 600 else "error"


class EndpointLabels:
    """The ``endpoint`` label of the webhook metrics (see the module docstring)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.named: set[str] = set()

    def __call__(self, tenant: str, endpoint_id: str, *, job_hook: bool = False) -> str:
        """The label of ``tenant``'s endpoint ``endpoint_id``; every per-job webhook (``job_hook``) is one."""
        if job_hook:
            return JOB_HOOKS
        name = f"{tenant}/{endpoint_id}"
        if name in self.named:
            return name
        if len(self.named) < self.limit:
            self.named.add(name)
            return name
        return OTHER
