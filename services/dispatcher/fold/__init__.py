"""The fold of JOBS into the job records: the pure fold and pricing, its partitions and batches,
pinned pulls, and the reactions to folded events."""
