"""`python -m harness.plot RESULTS_DIR ...`: rebuild figures and the report (harness.cli.plot)."""

if __name__ == "__main__":
    from harness.cli.exits import quiet_start, run_command

    quiet_start()  # before the imports of pandas and matplotlib: a Ctrl-C during them is one line
    from harness.cli.plot import main

    run_command(main)
