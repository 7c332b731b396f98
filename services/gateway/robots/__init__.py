"""Robots: joint-angle telemetry over HTTP and WebSocket, published, remembered and bounded per tenant."""
