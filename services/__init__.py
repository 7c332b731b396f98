"""gpurelay services: gateway, dispatcher, notifier, and the code they share (``common``)."""
