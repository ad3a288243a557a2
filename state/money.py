"""Money is kept in integer cents so partial sums add up exactly in any order."""


def to_cents(amount: float) -> int:
    """Currency units → cents, rounding half to even (as ClickHouse roundBankers)."""
    return int(round(amount * 100))


def from_cents(cents: int) -> float:
    """Cents → currency units, a JSON number with 2 decimals."""
    return round(cents / 100, 2)


def cents_ratio(cents: int, denominator: int) -> float | None:
    """Money per unit (ARPU, AOV...), 2 decimals; None for a zero denominator."""
    return round(cents / (100 * denominator), 2) if denominator else None
