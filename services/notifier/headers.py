"""The headers of a queued webhook delivery (written by the fan-out, read by the endpoint delivery)."""

from __future__ import annotations

H_EVENT = "Gpurelay-Event-Id"
H_TYPE = "Gpurelay-Event-Type"
H_JOB = "Gpurelay-Job"
H_URL = "Gpurelay-Url"
"""A per-job webhook's URL (it has no KV record to look up)."""
H_ENDPOINT = "Gpurelay-Endpoint"
"""A job webhook's endpoint id (``jobhook-...``) in the tenant's shared job-hook queue."""
