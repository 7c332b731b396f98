"""NATS as every process uses it: connecting and declaring, the embedded server and its cluster, KV
listings and watches, publishing, round trips."""
