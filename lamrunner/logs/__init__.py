"""Logging: the structlog processor chain a host configures once, and secret masking."""
