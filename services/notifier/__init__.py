"""gpurelay notifier: SSE streams and signed webhook deliveries read from JetStream. Never imports the
gateway or the dispatcher (the HTTP plumbing they share lives in ``services.common.http``).
"""
