"""End-to-end tests through the real embedded stack (``DevStack``): every component, real HTTP."""
