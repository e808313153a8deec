"""Drivers: the only layer that does I/O against real components (servers, engines, services)."""
