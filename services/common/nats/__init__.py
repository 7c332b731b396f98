"""NATS as every process uses it: connecting and declaring, KV listings, writes and watches, publishing,
round trips; running a nats-server is :mod:`services.common.nats.server`."""
