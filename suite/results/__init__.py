"""Reading runs back: queries as DataFrames, comparison tables, scaling, reports and charts, the published rows and
the regression gate.

The public API is re-exported here and loaded on first use (pandas is not imported until then):

    >>> from suite import results
    >>> results.runs(case="mask_rcnn", source="published")[["vendor", "topology", "map", "map_segm"]]
    >>> comparison = results.compare(case="faster_rcnn", baseline="nvidia_a100")
    >>> comparison.table, comparison.scaling
"""

from __future__ import annotations

from typing import Any

PUBLIC = ("runs", "compare", "Comparison", "COLUMNS")


def __getattr__(name: str) -> Any:
    if name in ("runs", "COLUMNS"):
        from suite.results import query

        return getattr(query, name)
    if name in ("compare", "Comparison"):
        from suite.results import comparison

        return getattr(comparison, name)
    raise AttributeError(f"module 'suite.results' has no attribute {name!r}")


__all__ = list(PUBLIC)
