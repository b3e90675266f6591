"""remedy=pascanu: the Omega regulariser of Pascanu, Mikolov & Bengio (2013) against Jacobians that
autograd computes step by step, its gradient against finite differences, and a training run."""

import pytest
import torch

from harness.core.cells import SLOPES, recurrent
from harness.core.errors import NotApplicable
from harness.core.remedies import omega, omega_of
from harness.core.spec import RunSpec
from harness.lab import run
from tests.conftest import build


def pieces(scale=1.3):
    model, batch = build("rnn", scale=scale, hidden_size=5, input_size=3, seq_len=15, batch_size=4)
    states = model(batch.inputs, model.initial_state(4))
    loss = batch.loss(model.top_hidden(states[-1]).unsqueeze(0))
    drives = model.input_drive(batch.inputs)
    with torch.no_grad():
        pres = [d + recurrent(h, model.weight_hh_l0, model.bias_hh_l0) for d, h in zip(drives, states[:-1])]
        slopes = [SLOPES["tanh"](u, torch.tanh(u)) for u in pres]
    return model, states, loss, drives, slopes


def test_omega_is_the_norm_preservation_of_every_steps_jacobian():
    model, states, loss, drives, slopes = pieces()
    value = omega(loss, states[1:], slopes, model.weight_hh_l0)
    grads = torch.autograd.grad(loss, states[1:], retain_graph=True)
    terms = []
    for t in range(1, len(states)):  # dh_t/dh_{t-1} by autograd, per sample
        per_sample = []
        for b in range(4):
            jacobian = torch.autograd.functional.jacobian(
                lambda h: model.step(h.unsqueeze(0), drives[t - 1][b : b + 1]).squeeze(0), states[t - 1][b].detach()
            )
            d = grads[t - 1][b]
            per_sample.append(((d @ jacobian).pow(2).sum() / d.pow(2).sum() - 1) ** 2)
        terms.append(torch.stack(per_sample).mean())
    assert value.item() == pytest.approx(torch.stack(terms).sum().item() / len(terms), rel=1e-10)


def test_omegas_gradient_is_its_finite_difference():
    model, states, loss, _, slopes = pieces()
    grads = [g.detach() for g in torch.autograd.grad(loss, states[1:])]
    w = model.weight_hh_l0.detach().clone().requires_grad_()
    (gradient,) = torch.autograd.grad(omega_of(grads, slopes, w), w)
    direction = torch.randn(w.shape, generator=torch.Generator().manual_seed(0), dtype=w.dtype)
    eps = 1e-6
    finite = (omega_of(grads, slopes, w + eps * direction) - omega_of(grads, slopes, w - eps * direction)) / (2 * eps)
    assert (gradient * direction).sum().item() == pytest.approx(finite.item(), rel=1e-6)


BASE = dict(
    activation="tanh",
    init="default",
    scale=1.0,
    seq_len=12,
    hidden_size=6,
    input_size=2,
    num_layers=1,
    batch_size=4,
    seed=0,
    task="adding",
    dtype="float64",
    device="cpu",
    recorder="exact",
    **{
        "train.steps": 3,
        "train.lr": 0.01,
        "train.optimizer": "sgd",
        "train.clip_norm": 1.0,
        "train.clip_value": None,
        "train.weight_decay": 0.0,
        "train.record_every": 3,
    },
)


def test_a_pascanu_run_trains_and_omega_moves_w_hh():
    plain = run.record(RunSpec.from_columns({**BASE, "cell": "rnn", "train.omega": 0.0}))
    regularised = run.record(RunSpec.from_columns({**BASE, "cell": "rnn", "train.omega": 2.0}))
    assert len(regularised.losses) == 2 and all(
        torch.isfinite(torch.tensor(r["eval_loss"])) for r in regularised.losses
    )
    assert not torch.allclose(plain.model.weight_hh_l0, regularised.model.weight_hh_l0)


def test_omega_on_another_cell_is_not_applicable():
    with pytest.raises(NotApplicable, match="one-layer rnn"):
        run.record(RunSpec.from_columns({**BASE, "cell": "lstm", "train.omega": 2.0}))


@pytest.mark.parametrize("scale", [0.6, 2.5])
def test_flossing_pulls_the_top_exponent_toward_zero(scale):
    """A contracting (scale 0.6) and a chaotic (scale 2.5) tanh rnn: a few gradient steps on the
    flossing objective bring the largest Lyapunov exponent, computed afresh, closer to 0."""
    from harness.core.theory import flossing_loss, lyapunov_exponent

    model, batch = build("rnn", scale=scale, hidden_size=8, input_size=4, seq_len=60, batch_size=4)
    before = lyapunov_exponent(model, batch.inputs, torch.Generator().manual_seed(1))
    optimiser = torch.optim.SGD(model.parameters(), lr=0.1)
    for step in range(10):
        optimiser.zero_grad()
        flossing_loss(model, batch.inputs, k=2, generator=torch.Generator().manual_seed(step)).backward()
        optimiser.step()
    after = lyapunov_exponent(model, batch.inputs, torch.Generator().manual_seed(1))
    assert abs(after) < 0.8 * abs(before), (before, after)


def test_a_flossing_run_trains_and_logs_its_objective():
    recording = run.record(
        RunSpec.from_columns({**BASE, "cell": "gru", "train.flossing_k": 2, "train.flossing_every": 2})
    )
    assert [row["step"] for row in recording.losses] == [0, 3]
    assert recording.losses[-1]["flossing_loss"] >= 0
    with pytest.raises(NotApplicable, match="flossing"):
        run.record(RunSpec.from_columns({**BASE, "cell": "lru", "train.flossing_k": 2, "train.flossing_every": 2}))
