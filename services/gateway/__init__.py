"""gpurelay gateway: the public REST API, the session and robot sockets, worker ingest and the local
backend's signed blob routes, one package per resource (its routes beside its logic). Publishes to
NATS; never imports the notifier or the dispatcher.
"""
