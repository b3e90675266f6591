"""`python -m harness.collect RESULTS_DIR`: rebuild a sweep's tables, figures and report (harness.cli.collect)."""

import sys

if __name__ == "__main__":
    from harness.cli.collect import main

    sys.exit(main())
