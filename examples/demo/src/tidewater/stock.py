"""Stock levels and adjustments."""

from dataclasses import dataclass

from . import settings


class AdjustmentTooLarge(Exception):
    """Raised when an adjustment needs a second approver."""


@dataclass
class StockLevel:
    sku: str
    warehouse: str
    units: int


def adjust(level: StockLevel, delta: int, approver: str | None = None) -> StockLevel:
    """Return the stock level after adding `delta` units (negative to remove)."""
    if abs(delta) > settings.MAX_ADJUSTMENT_UNITS and approver is None:
        raise AdjustmentTooLarge(f"{delta} units needs a second approver")
    units = level.units + delta
    if units < 0:
        raise ValueError(f"{level.sku} in {level.warehouse} would go below zero")
    return StockLevel(level.sku, level.warehouse, units)


def total_units(levels: list[StockLevel], sku: str) -> int:
    """Units of `sku` across every warehouse."""
    return sum(level.units for level in levels if level.sku == sku)
