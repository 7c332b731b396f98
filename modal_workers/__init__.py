"""GPU workloads, the runtime that runs them, and the Modal app that deploys them.

The runtime (``runtime/``) takes a :class:`~contracts.runs.RunRequest`, loads and runs its
workload and answers an :class:`~contracts.runs.Outcome`; ``runtime.local_host`` is the local pool's
process body (the dispatcher starts it), ``app`` the Modal app. Each workload is a package
(``lap_compare``, ``pose``, ``splat``, ``vlm``, ``nerf``) whose ``__init__`` exposes the entry points
the route table names; ``media`` is the video code they share. This package imports
:mod:`contracts` and ``services.common`` only, never a service: what it shares with the dispatcher
(the wire types, the route table) lives in :mod:`contracts`.
"""
