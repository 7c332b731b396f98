"""Uploads: pre-signed straight to storage, sealed and checked (size, magic bytes) at completion."""
