"""Code every service shares: settings, NATS, storage, auth helpers, logging."""
