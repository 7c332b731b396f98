"""gpurelay notifier."""
