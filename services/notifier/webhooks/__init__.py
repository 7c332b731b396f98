"""Webhook deliveries: the fan-out, each endpoint's delivery in per-job lanes, attempts, the HTTP/1.1
sender and its pool, leases, targets."""
