"""Record dL/dh_t for every t of a torch.nn.LSTM and a torch.nn.GRU, and draw both profiles.

python examples/record_lstm.py                 # writes results/python/lstm_gru.png
python examples/record_lstm.py --smoke --out /tmp/x   # a tiny version (the test suite runs it)
"""

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # a script that writes files
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

import harness  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes")
    parser.add_argument("--out", type=Path, default=Path("results/python"))
    args = parser.parse_args(argv)
    seq_len, hidden = (20, 8) if args.smoke else (300, 64)

    torch.manual_seed(0)
    x = torch.randn(seq_len, 16, 32)  # (seq_len, batch, input_size)
    fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    for module in (torch.nn.LSTM(32, hidden, num_layers=2), torch.nn.GRU(32, hidden, num_layers=2)):
        profile = harness.record(module, x)  # the probe loss: a random readout of h_T
        fit = profile.fit()
        profile.plot(ax, label=f"{type(module).__name__}: rate {fit['rate']:+.3f} nats/step ({fit['regime']})")
        profile.save(args.out / type(module).__name__)  # a run folder: python -m harness.plot reads it
    ax.set_title("torch.nn modules at PyTorch's default init, top layer's h")
    args.out.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out / "lstm_gru.png", dpi=120)
    print(args.out / "lstm_gru.png")


if __name__ == "__main__":
    main()
