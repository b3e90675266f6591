"""The theory's predictions of the rate, one row each, for every place that shows them: the summary's
theory_* and gap_* columns (harness.lab.results), the phase figure's curves, marks and legends
(harness.lab.figures.phase) and the report's summary table. harness.core.theory computes them (its
THEORY_COLUMNS also hold the critical scale and the note, which are not rates). No matplotlib here:
the results import this table too.
"""

from __future__ import annotations

from typing import NamedTuple


class Prediction(NamedTuple):
    """One prediction of the rate per step (nats), and how the phase figure draws it."""

    name: str  # the summary holds it as theory_<name>, and the measured rate minus it as gap_<name>
    label: str  # short, for "measured − <label>"
    key: str  # the phase figure's legend entry, which says how it is drawn
    line: str  # the phase figure's line style for it; "none": a mark per scale run, no line
    marker: str  # its mark in the phase figure's panel of gaps (and above, where it has no line)

    @property
    def column(self) -> str:
        return f"theory_{self.name}"

    @property
    def gap(self) -> str:
        return f"gap_{self.name}"


# In THEORY_COLUMNS' order, which the summary's gap_* columns, the legends and the captions follow.
THEORY = (
    Prediction("linear", "linear", "linear: ln ρ(W) (dash-dot)", "-.", "s"),
    Prediction("mean_field", "mean field", "mean field (dashed)", "--", "o"),
    Prediction("lyapunov", "Lyapunov", "Lyapunov exponent (x)", "none", "x"),
)
