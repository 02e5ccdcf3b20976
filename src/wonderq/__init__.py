"""WonderQ: a small, reliable message broker for work queues on a single server."""

__version__ = "0.1.0"
