"""Worker ingest: events of workers that cannot reach NATS, checked against their job-scoped token."""
