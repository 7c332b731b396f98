"""gpurelay contracts v1: the messages, specs, subjects and declarations every component shares.

This package imports nothing from ``services``.
"""

CONTRACTS_VERSION = "v1"
