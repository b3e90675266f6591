"""What a model does between two calls of the cell it runs in its own loop, checked on the capture pass.

The harness records such a cell by unrolling the cell's own recurrence from the inputs the model gave it
(harness.lab.module). That is the model's recurrence only where the model passes each step's state on to
the next call unchanged, in values and in gradient, and computes no input from what the cell returned.
The capture pass hands each step's outputs to the model as fresh leaves of a graph, so whatever the
model makes of them shows on that graph; check_steps reads it:

    state passed to step t, row by row   what step t - 1 returned, or (a padded sequence that has ended,
                                         held by torch.where or a 0/1 mask) the row's state before, held
                                         from then on to the end
    its gradient                         a random vector v on every state passed, pulled back to what
                                         each step returned, must come back as v itself (a held row's
                                         sums at its last returned state): a detach, a hook, a scaling
                                         changes it
    inputs                               none may be computed from what the cell returned before (its
                                         own predictions fed back with a gradient; greedy decoding, the
                                         argmax's embedding, has none)

What the loss reads of a held row's later outputs, which the model drops and the harness's recurrence
does not, is checked on the loss pass (Substitution.check_reads, with the rows this returns).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from harness.core.cells import as_tuple
from harness.core.errors import ModelError

Call = tuple[tuple, dict, Any]  # a cell's call: its positional and keyword arguments, what it returned


def like(out: Any, items: list[Any]) -> Any:
    """items in the container `out` came in (a tensor, tuple, named tuple or list)."""
    if isinstance(out, Tensor):
        return items[0]
    return type(out)(*items) if hasattr(out, "_fields") else type(out)(items)


class Arguments:
    """A cell's input and state in one of its calls, by position or by the names its forward gives them
    (nn.GRUCell's input and hx, a user cell's x_t and h)."""

    def __init__(self, cell: nn.Module):
        names = [p.name for p in inspect.signature(cell.forward).parameters.values()][:2]
        self.input_name, self.state_name = (names + ["input", "hx"][len(names) :])[:2]

    def input(self, call: Call) -> Any:
        args, kwargs, _ = call
        return args[0] if args else kwargs.get(self.input_name)

    def state(self, call: Call) -> Any:
        """The state it was called with, or None (the cell's initial state)."""
        args, kwargs, _ = call
        return args[1] if len(args) > 1 else kwargs.get(self.state_name)


def first(mask: Tensor) -> tuple[int, int]:
    """(step, batch row) of the first True in a (steps, B) mask."""
    step, row = mask.nonzero()[0]
    return int(step), int(row)


def stacked(states: list[tuple[Tensor, ...]], part: int) -> Tensor:
    return torch.stack([state[part].detach() for state in states])


def same_rows(a: Tensor, b: Tensor) -> Tensor:
    """(steps, B): whether each batch row of a equals b's, nan for nan, compared in the lower of their
    precisions (a state the model keeps in float32 is its float64 cell's state)."""
    if a.is_floating_point() and b.is_floating_point():
        low = a.dtype if torch.finfo(a.dtype).bits <= torch.finfo(b.dtype).bits else b.dtype
        a, b = a.to(low), b.to(low)
        equal = (a == b) | (a.isnan() & b.isnan())
    else:
        equal = a == b
    return equal.flatten(2).all(2)


def check_steps(
    name: str, arguments: Arguments, calls: list[Call], leaves: list[tuple[Tensor, ...]], initial: tuple
) -> Tensor:
    """ModelError (one line) where the model does more between two calls than pass the state on (see the
    module doc). Returns, per batch row, the step its state is held from (len(calls) + 1: never)."""
    steps, batch = len(calls), len(leaves[0][0])
    never = steps + 1
    held_from = torch.full((batch,), never, device=leaves[0][0].device)
    given = [as_tuple(initial if state is None else state) for state in map(arguments.state, calls)]
    if steps < 2:
        return held_from
    for t in range(1, steps):
        shapes = [tuple(part.shape) for part in given[t]], [tuple(part.shape) for part in leaves[t - 1]]
        if shapes[0] != shapes[1]:
            raise ModelError(
                f"module={name}: step {t} is given a state of shapes {shapes[0]} where step {t - 1} returned "
                f"{shapes[1]}; expected the state it returned"
            )
    parts = range(len(leaves[0]))
    # (steps - 1, B): at step t >= 1, the state given is what step t - 1 returned / the state given before
    passed = torch.stack([same_rows(stacked(given[1:], k), stacked(leaves[:-1], k)) for k in parts]).all(0)
    kept = torch.stack([same_rows(stacked(given[1:], k), stacked(given[:-1], k)) for k in parts]).all(0)
    step = torch.arange(1, steps, device=held_from.device)[:, None]  # (steps - 1, 1)
    changed = ~passed & ~kept
    if changed.any():
        t, row = first(changed)
        raise ModelError(
            f"module={name}: the state passed to step {t + 1} is neither what step {t} returned nor, for a padded "
            f"sequence that has ended, its state before (batch row {row}: a reset, a norm, noise, zoneout); "
            "expected the cell's own recurrence"
        )
    pulled = pulled_back(name, given, leaves)  # per part, (steps - 1, B, ...): what each step's return got
    # A row is held from step t where what step t - 1 returned reached no later state (the gradient says
    # so even where the values cannot: a padded step whose output equals the held state, IRNN on zeros)
    # and the state given is the one before; a row that is not passed on must be held.
    dropped = torch.stack([(both[0] == 0).flatten(2).all(2) for both, _ in pulled]).all(0) & kept
    starts = dropped | ~passed
    held_from = torch.where(starts.any(0), starts.float().argmax(0) + 1, held_from)
    resumed = (step > held_from) & ~kept
    # A row "held" where its values were passed on as well (a state of zeros through a relu) and that runs
    # again was never held: the gradient check below tells what it is.
    by_gradient = resumed.any(0) & passed.gather(0, (held_from - 1).clamp(max=steps - 2)[None]).squeeze(0)
    held_from = torch.where(by_gradient, never, held_from)
    resumed &= ~by_gradient
    if resumed.any():
        t, row = first(resumed)
        raise ModelError(
            f"module={name}: the state of batch row {row}, held from step {int(held_from[row])} (as a padded "
            f"sequence that has ended), is run again at step {t + 1}; expected a held state to stay held"
        )
    check_gradient(name, pulled, held_from)
    return held_from


def pulled_back(
    name: str, given: list[tuple[Tensor, ...]], leaves: list[tuple[Tensor, ...]]
) -> list[tuple[Tensor, float]]:
    """A random v_t on every state passed (t >= 1), pulled back to what each step returned: per state
    part, (got and v stacked: (2, steps - 1, B, ...), v of step t at t - 1) and the rounding allowed."""
    steps = len(given)
    generator = torch.Generator(leaves[0][0].device).manual_seed(0)  # not torch's: a recording draws nothing from it
    pulled = []
    for k in range(len(leaves[0])):
        returned = [leaves[u][k] for u in range(steps - 1)]
        passed_on = [given[t][k] for t in range(1, steps)]
        cut = next((t for t, s in enumerate(passed_on, 1) if not s.requires_grad), None)
        if cut is not None:
            raise ModelError(
                f"module={name}: the model detaches the state between steps {cut - 1} and {cut} (truncated "
                "backpropagation); expected the gradient to flow through the whole recurrence"
            )
        v = [torch.randn(s.shape, generator=generator, dtype=s.dtype, device=s.device) for s in passed_on]
        grads = torch.autograd.grad(passed_on, returned, v, allow_unused=True)
        got = torch.stack([torch.zeros_like(r) if g is None else g for g, r in zip(grads, returned)])
        del grads
        # (got, v): v in got's precision; the rounding allowed is the coarser of the cell's and the state's
        eps = max(torch.finfo(got.dtype).eps, torch.finfo(v[0].dtype).eps)
        pulled.append((torch.stack([got, torch.stack(v).to(got.dtype)]), eps))
        del v
    return pulled


def check_gradient(name: str, pulled: list[tuple[Tensor, float]], held_from: Tensor) -> None:
    """Step u's return must get v_{u+1} (the state passed on unchanged), up to the rounding of a cast
    between the cell's precision and the state's; the last one a row returns before it is held, also
    every later v of that row (the held state is it), up to the rounding of that sum; what a row
    returns from then on, nothing."""
    for both, eps in pulled:
        got, expected = both[0], both[1]
        steps = len(got) + 1
        tail = expected.flip(0).cumsum(0).flip(0)  # tail[t - 1] = v_t + v_{t+1} + ...
        u = torch.arange(steps - 1, device=held_from.device)[:, None]  # (steps - 1, 1)
        shape = (steps - 1, len(held_from)) + (1,) * (expected.dim() - 2)
        summed = (u + 2 == held_from).view(shape)  # a row held from step u + 2 holds what step u returned
        tight = 2 * eps * expected.abs() + 1e-3 * eps  # v passed on: a cast's rounding
        expected.mul_((u + 1 < held_from).view(shape))  # step u + 1 was given what step u returned
        expected[:-1] += tail[1:] * summed[:-1]
        loose = min(max(1e3, 10.0 * steps) * eps, 0.05) * (1 + float(tail.abs().amax()))  # a sum's rounding
        tolerance = torch.where(summed, loose, tight)
        del tail
        off = (got - expected).abs_().gt_(tolerance).flatten(2).any(2)  # (steps - 1, B)
        if off.any():
            u, row = first(off)
            raise ModelError(
                f"module={name}: the gradient of the state passed to step {u + 1} does not come back unchanged to "
                f"what step {u} returned (batch row {row}: a detach, a hook or a scaling on the state); "
                "expected the gradient to flow through the whole recurrence"
            )


def held_parts(parts: list[Tensor], held_from: Tensor, sources: int | None) -> list[tuple[int, Tensor]]:
    """(step, the harness's output there) whose gradient check_held_reads asks of the loss: the steps from
    which some row is held, and, in the dependency view (sources=N), with a row held by the last step,
    every step before the last."""
    last = len(parts) - 1
    held_at_last = sources is not None and bool((held_from <= last).any())
    return [
        (t, part)
        for t, part in enumerate(parts)
        if part.requires_grad and (bool((held_from <= t).any()) or (held_at_last and t < last))
    ]


def check_held_reads(
    name: str,
    late: list[tuple[int, Tensor]],
    grads: Sequence[Tensor | None],
    held_from: Tensor,
    sources: int | None,
    last: int,
) -> None:
    """ModelError where the loss (its gradient `grads` at held_parts' steps, `late`) reads, of a padded
    sequence that has ended, what the cell returns once its state is held (the model drops it; the
    harness's recurrence runs on), or, in the dependency view, which detaches every step but the loss's,
    its held state (an earlier step's output)."""
    for (t, _), g in zip(late, grads, strict=True):
        if g is None:
            continue
        in_view = sources is not None and t < last  # a step the dependency view detaches
        rows = g.flatten(1).ne(0).any(1) & (held_from <= (last if in_view else t))
        if not rows.any():
            continue
        row = int(rows.nonzero()[0])
        if in_view:
            raise ModelError(
                f"sources={sources}: the loss at the last step reads, for batch row {row}, a padded "
                f"sequence held from step {int(held_from[row])}, its held state (step {t}'s output), "
                "which the dependency view detaches; expected a per-step loss that leaves ended rows out, "
                "or sources=None"
            )
        raise ModelError(
            f"module={name}: the loss reads what the cell returned at step {t} for batch row {row}, whose "
            f"state the model holds from step {int(held_from[row])} (a padded sequence that has "
            "ended); expected it to read the held state, or nothing of that row"
        )


def check_feedback(name: str, arguments: Arguments, calls: list[Call], leaves: list[tuple[Tensor, ...]]) -> None:
    """ModelError where an input is computed from what the cell returned before, with a gradient."""
    returned = [r for step in leaves for r in step if r.requires_grad]
    fed = [x for x in map(arguments.input, calls[1:]) if isinstance(x, Tensor) and x.requires_grad]
    if not (fed and returned):
        return
    generator = torch.Generator(fed[0].device).manual_seed(1)
    # random, not ones: a feedback whose features sum to a constant (centred logits) would cancel ones
    v = [torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device) for x in fed]
    grads = torch.autograd.grad(fed, returned, v, allow_unused=True)
    if any(g is not None and g.ne(0).any() for g in grads):
        raise ModelError(
            f"module={name}: the model computes its input at a step from what the module returned before (it "
            "feeds its own outputs or predictions back); expected inputs that do not depend on its outputs"
        )
