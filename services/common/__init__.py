"""Code every service and worker shares, one floor above :mod:`contracts`: settings, NATS and the one
publish function, storage, keys and tokens, the SSRF guard, KV watching, the HTTP plumbing of the
gateway and the notifier (``http``: problem+json, CORS, health, auth errors), logging and processes.
Imports :mod:`contracts` only, never a service.
"""
