"""``/v1/usage``: what a tenant (or one end user) ran and spent, and its quotas."""
