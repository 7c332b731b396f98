"""The CLI's App API verbs, built on the Python client (``gpurelay_client``): tokens, sessions ls, robots,
bulk cancel, usage and a tenant's CORS origins."""
