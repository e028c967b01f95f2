"""Tidewater: stock levels across warehouses."""

__version__ = "2.4.1"
