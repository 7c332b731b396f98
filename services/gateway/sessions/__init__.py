"""Live sessions: start, frames in over HTTP and the session socket, control, the worker's feed, the latest PLY."""
