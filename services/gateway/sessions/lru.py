"""Bounded per-session state of the gateway: an LRU dict, and the token bucket that limits a session's frame rate."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Generic, TypeVar

_V = TypeVar("_V")


class Lru(Generic[_V]):
    """A dict of at most ``size`` entries; the least recently used goes first."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[str, _V] = OrderedDict()

    def get(self, key: str) -> _V | None:
        """The value of ``key`` (now the most recently used), or ``None``."""
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: str, value: _V) -> _V:
        """Store ``value`` under ``key``; the oldest entry goes when over the size."""
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)
        return value

    def pop(self, key: str) -> _V | None:
        """Forget ``key``: its value, or ``None`` when it was not held."""
        return self._items.pop(key, None)


@dataclass
class TokenBucket:
    """``rate`` tokens a second, at most ``rate`` held (one second's burst)."""

    rate: float
    tokens: float
    at: float

    def take(self, now: float) -> float:
        """0 if a token was taken, else the seconds until one is due."""
        self.tokens = min(self.rate, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate
