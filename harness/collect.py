"""`python -m harness.collect RESULTS_DIR`: rebuild a sweep's tables, figures and report (harness.cli.collect)."""

if __name__ == "__main__":
    from harness.cli.exits import quiet_start, run_command

    quiet_start()  # before the imports of pandas and matplotlib: a Ctrl-C during them is one line
    from harness.cli.collect import main

    run_command(main)
