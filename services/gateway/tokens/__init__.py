"""``/v1/tokens``: short-lived scoped tokens for browsers and devices that must not hold the API key."""
