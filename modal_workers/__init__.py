"""GPU workloads, the runtime that runs them, and the Modal app that deploys them.

The runtime (``runtime``, ``runtime_context``, ``runtime_yields``, ``runtime_sinks``, ``runtime_io``) takes a
:class:`~contracts.runs.RunRequest`, loads and runs its workload and answers an
:class:`~contracts.runs.Outcome`; ``local_host`` is the local pool's process body (the dispatcher
starts it), ``app`` the Modal app. This package imports :mod:`contracts` and ``services.common``
only, never a service: what it shares with the dispatcher (the wire types, the route table) lives in
:mod:`contracts`.
"""
