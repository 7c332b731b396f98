"""Code every service and worker shares, one floor above :mod:`contracts`: the settings' base, NATS
(``nats``: connecting, the one publish function, KV watching), storage, keys and tokens (``auth``),
the SSRF guard, the HTTP plumbing of the gateway and the notifier (``http``: problem+json, CORS,
health, auth errors), logs, metrics and traces (``observability``) and processes.
Imports :mod:`contracts` only, never a service.
"""
