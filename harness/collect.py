"""`python -m harness.collect RESULTS_DIR`: rebuild a sweep's tables, figures and report (harness.cli.collect)."""

if __name__ == "__main__":
    from harness.cli.collect import main
    from harness.cli.exits import run_command

    run_command(main)
