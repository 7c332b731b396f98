"""Webhook endpoints (the notifier delivers to them) and the dead letters of each, with their redrive."""
