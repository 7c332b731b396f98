"""``gpurelay demo``: a lap_compare job end to end on the embedded stack, on synthetic or given videos."""
