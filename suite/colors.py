"""One colour per accelerator, the same in the HTML report's charts and in the MLflow UI's.

The colour follows the vendor config (its place among the registry's vendors), never the order rows happen to come
in, so an accelerator looks the same in every chart of every report. The MLflow UI colours a run by its
`mlflow.runColor` tag (a hex colour, the tag its colour picker writes), so every benchmark row carries it.
"""

from __future__ import annotations

# matplotlib's tab10, in hex: the form both matplotlib and the MLflow UI take.
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf")


def accelerator_color(vendor: str) -> str:
    """The hex colour of `vendor`'s accelerator."""
    from suite import registry

    known = sorted(registry.vendors())
    if vendor in known:
        return PALETTE[known.index(vendor) % len(PALETTE)]
    return PALETTE[sum(vendor.encode()) % len(PALETTE)]  # a plugin's vendor: stable across runs all the same
