"""gpurelay dispatcher."""
