"""A character-level language model trained on Python's own sources, with the gradient monitor on:
how far back does its gradient reach, and how does that change while it trains?

python examples/char_lm.py                          # ~3 min: results/char_lm/ (figure, monitor log, TensorBoard)
python examples/char_lm.py --smoke --out /tmp/lm    # tiny (the test suite runs it)
tensorboard --logdir results/char_lm/tensorboard    # the monitor's scalars and profiles
python -m harness.plot results/char_lm              # profiles over training, from the monitor's log

The model is the usual one: nn.Embedding -> 2-layer nn.LSTM (batch first) -> nn.Linear, trained with
cross-entropy at every step. The monitor records the dependency-length view (sources=16: for 16 loss
steps s, the gradient of the cross-entropy at s, against its own target, with respect to h_{s-k}) and
its horizon: the lag at which that gradient has fallen 3 decades below its value at s itself.
The three lines a training loop gains are marked `# monitor`.
"""

from __future__ import annotations

import argparse
import sysconfig
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # a script that writes files
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

import harness  # noqa: E402

SOURCES = ("argparse.py", "textwrap.py", "difflib.py", "fractions.py", "heapq.py", "shlex.py")  # ~250 kB, no download


def corpus() -> str:
    """Text that ships with Python: a few of its standard library's sources."""
    folder = Path(sysconfig.get_paths()["stdlib"])
    return "\n".join((folder / name).read_text(encoding="utf-8") for name in SOURCES)


class CharLM(nn.Module):
    def __init__(self, vocab: int, embed: int = 32, hidden: int = 128, layers: int = 2):
        super().__init__()
        self.embed = nn.Embedding(vocab, embed)
        self.lstm = nn.LSTM(embed, hidden, num_layers=layers, batch_first=True)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:  # (B, T) -> (B, T, vocab)
        return self.head(self.lstm(self.embed(tokens))[0])


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The training loss: every step's prediction against its next character."""
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten())


def cross_entropy_at(logits: torch.Tensor, targets: torch.Tensor, s: int) -> torch.Tensor:
    """L_s for the dependency view: the prediction at step s against its own target."""
    return F.cross_entropy(logits[:, s], targets[:, s])


def batches(data: torch.Tensor, batch: int, seq_len: int, generator: torch.Generator):
    """Random windows of the text: (tokens, next tokens), each (batch, seq_len)."""
    while True:
        start = torch.randint(len(data) - seq_len - 1, (batch, 1), generator=generator)
        window = data[start + torch.arange(seq_len + 1)]
        yield window[:, :-1], window[:, 1:]


def train(
    steps: int, hidden: int = 128, batch: int = 32, seq_len: int = 64, monitor_kwargs: dict | None = None
) -> tuple[CharLM, harness.Monitor | None]:
    """Train the model for `steps` steps (Adam, lr 3e-3), with a monitor if monitor_kwargs are given."""
    text = corpus()
    alphabet = sorted(set(text))
    data = torch.tensor([alphabet.index(c) for c in text])
    torch.manual_seed(0)
    model = CharLM(len(alphabet), hidden=hidden)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    monitor = None
    if monitor_kwargs is not None:  # monitor
        monitor = harness.Monitor(model, module=model.lstm, **monitor_kwargs)
    for step, (tokens, targets) in zip(
        range(steps + 1), batches(data, batch, seq_len, torch.Generator().manual_seed(1))
    ):
        if step:  # step 0 records the untrained model
            optimiser.zero_grad()
            cross_entropy(model(tokens), targets).backward()
            optimiser.step()
        if monitor is not None:
            monitor.step(step, (tokens, targets))  # monitor
    if monitor is not None:
        monitor.close()  # monitor
    return model, monitor


def draw(monitor: harness.Monitor, path: Path) -> None:
    """Rate and horizon of each layer's h against the training step."""
    fits = [dict(fit, step=s.step) for s in monitor.snapshots for fit in s.fits if fit["state"] == "h"]
    fig, (rate_ax, horizon_ax) = plt.subplots(1, 2, figsize=(9, 3.4), layout="constrained")
    for layer in sorted({f["layer"] for f in fits}):
        rows = [f for f in fits if f["layer"] == layer]
        steps = [f["step"] for f in rows]
        rate_ax.plot(steps, [f["rate"] for f in rows], marker="o", ms=3, label=f"layer {layer}")
        horizon = [f["horizon"] for f in rows]
        horizon_ax.plot(steps, horizon, marker="o", ms=3, label=f"layer {layer}")
        censored = [(s, h) for s, h, f in zip(steps, horizon, rows) if f["horizon_censored"]]
        if censored:
            horizon_ax.scatter(*zip(*censored), marker="^", s=40, color="k", zorder=3)
    rate_ax.set(xlabel="training step", ylabel="rate (nats per step back)", title="decay rate of dL_s/dh_{s-k}")
    horizon_ax.set(xlabel="training step", ylabel="horizon (steps)", title="gradient horizon (3 decades)")
    for ax in (rate_ax, horizon_ax):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(
        "char-level LSTM on Python's sources: dependency view, 16 loss steps, 8 sequences (▲ censored at seq_len)",
        fontsize=9,
    )
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--out", type=Path, default=Path("results/char_lm"))
    args = parser.parse_args(argv)
    from harness.lab.loggers import Parquet, TensorBoard  # the [tensorboard] extra

    steps, hidden, every = (4, 16, 2) if args.smoke else (args.steps, 128, 20)
    loggers = [TensorBoard(args.out / "tensorboard"), Parquet(args.out / "monitor")]
    kwargs = dict(loss=cross_entropy_at, sources=16, every=every, sequences=8, loggers=loggers)
    _, monitor = train(steps, hidden=hidden, monitor_kwargs=kwargs)
    draw(monitor, args.out / "char_lm.png")
    first, last = monitor.snapshots[0], monitor.snapshots[-1]
    for snapshot, what in ((first, "untrained"), (last, f"after {last.step} steps")):
        top = next(f for f in reversed(snapshot.fits) if f["state"] == "h")
        print(
            f"{what}: top layer rate {top['rate']:+.3f} nats/step, horizon {top['horizon']:.0f} steps"
            + (" (censored)" if top["horizon_censored"] else "")
        )
    print(args.out / "char_lm.png")


if __name__ == "__main__":
    main()
