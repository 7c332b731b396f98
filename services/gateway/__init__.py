"""gpurelay gateway."""
