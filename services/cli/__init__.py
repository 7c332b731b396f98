"""gpurelay cli."""
