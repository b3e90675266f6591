"""`python -m harness.plot RESULTS_DIR ...`: rebuild figures and the report (harness.cli.plot)."""

import sys

if __name__ == "__main__":
    from harness.cli.plot import main

    sys.exit(main())
