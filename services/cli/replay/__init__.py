"""Reading the log again: ``gpurelay replay`` (to stdout, a subject or a webhook endpoint; ``--rebuild
jobs``) and ``gpurelay dlq`` (webhook dead letters, redriven)."""
