"""Jobs: submit (one or a batch), read, list and cancel, with the tenant's quotas checked at admission."""
