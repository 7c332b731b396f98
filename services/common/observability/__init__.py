"""What every process tells operators: logs, Prometheus metrics (with bounded labels) and traces."""
