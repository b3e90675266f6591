"""What theory predicts for a run's per-step rate (natural log per step back), beside what it measures.

Each prediction comes from the network's own protocol (harness.core.protocol); this module asks and
reports, and offers the names of its two halves (harness.core.meanfield, harness.core.lyapunov).

linear      where the step is linear, ln of its largest gain per step: a one-layer rnn with
            activation=identity multiplies the gradient by W_hh^T every step, so ln rho(W_hh) (for
            init=orthogonal or identity the gain over k steps is exactly scale^k); the lru, ln(scale
            max|lambda_j|) from its eigenvalues (never a dense Jacobian, so hidden 8192 is cheap); an
            indrnn with activation=identity, ln max|u_j|; a user cell, the same from the step's own
            Jacobian dS_t/dS_{t-1} where the step is affine in its state (affine_step_rate).
mean_field  a one-layer rnn with gaussian or orthogonal init and any elementwise activation
            (harness.core.meanfield): rate = ln(chi) / 2 at the variance fixed point q*, and the
            critical scale where chi = 1.
lyapunov    the largest Lyapunov exponent of the run's own forward trajectory, for every cell
            (harness.core.lyapunov); for the lru, linear and diagonal, its linear rate.
closed form on the probe, the whole profile where the step is linear and diagonal (the lru, with its
            ring's expectation; an identity-activation indrnn): closed_form_profile.
Where a prediction does not apply, it is NaN and `theory_note` says why; so is the Lyapunov exponent
(and the spectrum) of a trajectory that overflowed (diverged_at): it grows beyond the float range, and
what the tangents meet after the overflow (inf, nan, relu'(nan) = 0) would read as -inf. The
predictions from the weights alone (linear, mean field) still stand there: they say how fast it grows.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from harness.core.cells import MAX_JACOBIAN_STATE, affine_step_rate
from harness.core.lyapunov import (
    GROWTH_PER_QR,
    MAX_QR_INTERVAL,
    SPREAD_PER_QR,
    CarriedTangent,
    Growth,
    chunk_drives,
    first_tangents,
    flossing_loss,
    follow,
    jvp,
    lyapunov_exponent,
    lyapunov_spectrum,
    orthonormal,
    push_tangents,
    spectrum_summary,
)
from harness.core.meanfield import (
    gaussian_moments,
    mean_field_critical_scale,
    mean_field_curve,
    mean_field_fixed_point,
    mean_field_rate,
)
from harness.core.protocol import StackedNet, log_spectral_radius
from harness.core.runfolder import SPECTRUM_COLUMNS, THEORY_COLUMNS
from harness.core.spec import RunSpec

__all__ = [  # what this module reports, and the names it has always offered from its two halves
    "THEORY_COLUMNS",
    "SPECTRUM_COLUMNS",
    "predictions",
    "closed_form_profile",
    "carries_lyapunov",
    "linear_rate",
    "MAX_JACOBIAN_STATE",
    "affine_step_rate",
    "gaussian_moments",
    "mean_field_fixed_point",
    "mean_field_rate",
    "mean_field_curve",
    "mean_field_critical_scale",
    "jvp",
    "chunk_drives",
    "push_tangents",
    "SPREAD_PER_QR",
    "GROWTH_PER_QR",
    "MAX_QR_INTERVAL",
    "Growth",
    "follow",
    "first_tangents",
    "lyapunov_spectrum",
    "CarriedTangent",
    "orthonormal",
    "flossing_loss",
    "lyapunov_exponent",
    "spectrum_summary",
]


def linear_rate(model: StackedNet) -> float:
    """ln of the spectral radius of the (scaled) recurrent matrix of a one-layer rnn."""
    return log_spectral_radius(model.weight_hh_l0)


def carries_lyapunov(model: StackedNet, run: RunSpec) -> bool:
    """Whether the run's recording carries the largest exponent's tangent (CarriedTangent): networks
    with written-out Jacobians, without a spectrum (whose k tangents and QR decompositions keep their
    own pass)."""
    return model.analytic_jacobian and not run.theory.spectrum_k


def predictions(
    model: StackedNet,
    run: RunSpec,
    inputs: Tensor,
    drive_var: float,
    generator: torch.Generator,
    carried_lyapunov: float | None = None,
    diverged_at: int | None = None,
) -> dict[str, float | str]:
    """Every prediction that applies to this run, and why the others do not: each from the network's
    own protocol (linear_rate, mean_field, linear_lyapunov). carried_lyapunov: the largest exponent,
    where the recording carried it (see carries_lyapunov); else it is computed here. diverged_at: the
    first time step whose state is not finite (recorders.Overflow.at), None where the forward pass
    stayed finite: the trajectory's exponents are then NaN with a note, and not computed."""
    notes = []
    linear = model.linear_rate(inputs, generator)  # a user cell's draws a state: before the exponent's draws
    if isinstance(linear, str):
        notes.append(linear)
        linear = math.nan
    field = model.mean_field(run.init.name, run.scale, drive_var)
    if isinstance(field, str):
        notes.append(field)
        mean_field = critical = math.nan
    else:
        mean_field, critical = field
    spectrum_k = run.theory.spectrum_k
    if diverged_at is not None:  # a linear step's exponent is its linear rate, still a prediction
        lyapunov = linear if model.linear_lyapunov else math.nan
        if spectrum_k:
            spectrum = torch.full((spectrum_k,), math.nan, dtype=torch.float64)
        if spectrum_k or not model.linear_lyapunov:
            notes.append(
                f"lyapunov: the forward pass overflowed at step {diverged_at}; the Lyapunov exponent of an "
                "overflowing trajectory is not defined (it grows beyond the float range)"
            )
    elif spectrum_k:  # theory_lyapunov is its first exponent: one trajectory, transient and statistic
        spectrum = lyapunov_spectrum(model, inputs, generator, spectrum_k, seed=run.seed)
        lyapunov = float(spectrum[0])
    elif carried_lyapunov is not None:
        lyapunov = carried_lyapunov
    elif model.linear_lyapunov:
        lyapunov = linear
    else:
        lyapunov = lyapunov_exponent(model, inputs, generator)
    return {
        "theory_linear": linear,
        "theory_mean_field": mean_field,
        "theory_critical_scale": critical,
        "theory_lyapunov": lyapunov,
        "theory_note": "; ".join(notes),
        **({"spectrum": spectrum.tolist(), **spectrum_summary(spectrum)} if spectrum_k else {}),
    }


def closed_form_profile(
    model: StackedNet, run: RunSpec, readout: Tensor | None, inputs: Tensor
) -> dict[str, np.ndarray]:
    """Closed-form log10 ||dL/dh_{T-k}|| for k = 0..T (indexed by t = T - k), where one exists: the
    network's own closed_form_profile on the probe, whose dL/dh_T is the readout c, for one layer (the
    lru: theory_log10_norm and theory_ring_log10_norm; an identity-activation indrnn: theory_log10_norm)."""
    if readout is None or run.num_layers != 1 or run.task.name != "probe":
        return {}
    return model.closed_form_profile(readout, run.seq_len, inputs)
