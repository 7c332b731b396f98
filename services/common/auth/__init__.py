"""Credentials: API keys and their cache, stream and ingest tokens."""
