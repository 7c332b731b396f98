"""The HTTP bodies of the public API, one module per resource."""
