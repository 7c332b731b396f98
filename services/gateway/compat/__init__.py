"""The live-splat seed's routes, with its shapes, for one splat session."""
