"""One async client per external service."""
