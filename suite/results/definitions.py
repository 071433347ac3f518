"""Which figure of a measured run stands for a figure of another row, or whether the two measure different things.

A ratio is only taken between figures with one definition:

    p_core     a published row's p_core was timed on a host clock without a closing synchronize: a measured row
               is compared with its `p_core_unsynced`, which is that definition
    p_whole    a published Mask R-CNN page starts p_whole's clock before the dataset is built
               (`bench.p_whole_clock=run_start`): a measured row is compared with its `p_whole_with_init`
    p_whole, e2e_time
               depend on what the run did besides training: a throughput-mode run (a step budget, no evaluations)
               and an epoch run with an evaluation after every epoch (every published row, every convergence run)
               are not comparable, so no ratio is taken between rows of different modes

The comparison tables and the regression gate both ask here, so they never disagree on what is comparable.
"""

from __future__ import annotations

from suite import names

RUN_START_CLOCK = "run_start"
MODE_DEPENDENT = (names.P_WHOLE, names.E2E_TIME)
NOT_COMPARABLE_ACROSS_MODES = ("throughput-mode p_whole and e2e_time come from a step budget without evaluations; "
                               "an epoch run's include an evaluation after every epoch: no ratio is taken")


def counterpart(metric: str, *, mode: str | None, other_mode: str | None, other_published: bool,
                other_p_whole_clock: str | None = None) -> str | None:
    """The metric of a measured row (whose mode is `mode`) to set against `metric` of another row, or None where
    the two rows' figures do not measure the same thing."""
    if metric in MODE_DEPENDENT and mode != other_mode:
        return None
    if metric == names.P_WHOLE and other_p_whole_clock == RUN_START_CLOCK:
        return names.P_WHOLE_WITH_INIT
    if metric == names.P_CORE and other_published:
        return names.P_CORE_UNSYNCED
    return metric
