"""What runs a workload: the loader and runtime, the ``ctx`` API, yields, progress, sinks, inputs,
the local pool's process body and the live-session plumbing."""
