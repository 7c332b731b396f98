"""``/v1/cors``: a tenant's own CORS origins (KV ``tenant_cors``)."""
