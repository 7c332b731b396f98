"""gpurelay contracts v1: the messages, specs, subjects and declarations every component shares.

The bottom layer: events and their ids (``event_ids`` owns every id format), job and session specs,
records, subjects and stream declarations, the HTTP bodies, and the dispatcher <-> worker wire
(``runs``, ``route_table``). This package imports nothing from ``services`` or ``modal_workers``.
"""

CONTRACTS_VERSION = "v1"
