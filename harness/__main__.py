"""`python -m harness` and the `harness` console script: the command line (harness.cli.main)."""

from harness.cli.exits import quiet_start


def main() -> None:
    quiet_start()  # before the imports of torch, pandas and Hydra: a Ctrl-C during them is one line
    from harness.cli.main import command

    command()


if __name__ == "__main__":
    main()
