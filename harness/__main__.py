"""`python -m harness`: the command line (harness.cli.main)."""

from harness.cli.main import command

if __name__ == "__main__":
    command()
