"""The events: the type → payload registry, and the payloads of each family."""
