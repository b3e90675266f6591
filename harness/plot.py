"""`python -m harness.plot RESULTS_DIR ...`: rebuild figures and the report (harness.cli.plot)."""

if __name__ == "__main__":
    from harness.cli.exits import run_command
    from harness.cli.plot import main

    run_command(main)
