"""A live session's recording in memory, and its exports: LeRobotDataset v3, MCAP (Foxglove), Rerun .rrd."""
