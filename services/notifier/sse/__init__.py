"""Server-Sent Events: the shared live tail (hub), each connection's tap and feed, the stream's frames,
per-tenant slots."""
