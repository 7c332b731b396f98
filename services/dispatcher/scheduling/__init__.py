"""Which queued attempt fills a slot: the queue index and its lines, fair share and its clock,
positions and ETAs, tallies, the sweeper and the scheduler."""
