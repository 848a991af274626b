"""The dashboards' money filter: each currency's own decimals, for stored amounts and numpy sums alike."""

from __future__ import annotations

from decimal import Decimal

from dashboards.templatetags.amounts import money


def test_a_figure_is_written_with_its_currencys_decimals():
    assert money(1200.0, "JPY") == "1200"
    assert money(0.1 + 0.2, "EUR") == "0.30"  # the shortest repr, rounded to the cent, not 0.30000000000000004
    assert money(Decimal("12.5"), "BHD") == "12.500"
