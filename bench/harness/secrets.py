"""The test secrets, defined once: every test settings object and token check uses these."""

from __future__ import annotations

SIGNING_SECRET = "test-signing-secret-0123456789abcdef"
"""Signs stream tokens, blob URLs and per-job webhook secrets in every test deployment."""
INGEST_SECRET = "test-ingest-secret-0123456789abcdef"
"""Signs the workers' ingest tokens in every test deployment."""
