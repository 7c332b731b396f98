"""``gpurelay session …``: live sessions (start, frames, show, stop) and their recordings (export, replay)."""
