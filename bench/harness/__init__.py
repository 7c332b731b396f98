"""What the benchmarks and the tests share: the services as processes under faults (the stack, its
workloads, clients, reads and audits), the soak, webhook receivers, waiting, a synthetic NeRF scene and
a tiny Gemma."""
