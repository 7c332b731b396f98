"""What a client asks for: job specs (a discriminated union on kind), job params and session params."""
