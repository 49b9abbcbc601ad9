"""The yardsticks: Tmall Double 11 peak order-creation rates.

Sources: Alibaba Group's announcement of 11 November 2020 ("order creation
peaked at 583,000 orders per second", 26 seconds after midnight, "1,457 times
that of the first 11.11 in 2009").  The 2009 figure is derived from those
two numbers: 583,000 / 1,457 = 400.1 orders/s.
"""

PEAK_2020 = 583_000
PEAK_2020_GROWTH = 1_457
PEAK_2009 = PEAK_2020 / PEAK_2020_GROWTH  # about 400 orders/s
SOURCE = ("Alibaba Group, 11 Nov 2020: peak 583,000 orders created/s, 1,457x the 2009 peak "
          "(so 2009 = 583,000 / 1,457 = 400 orders/s)")

__all__ = ["PEAK_2020", "PEAK_2009", "PEAK_2020_GROWTH", "SOURCE", "peak_ratios"]


def peak_ratios(orders_per_second):
    """Return ``(ratio_to_2020_peak, ratio_to_2009_peak)`` for a rate."""
    return orders_per_second / PEAK_2020, orders_per_second / PEAK_2009
