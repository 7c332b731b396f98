"""gpurelay gateway: the public REST API, the session and robot sockets, worker ingest and the local
backend's signed blob routes. Publishes to NATS; never imports the notifier or the dispatcher.
"""
