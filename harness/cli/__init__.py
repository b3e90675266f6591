"""The command line: Hydra entry points (`python -m harness`), the fast sweeper's work, and the
collect / plot commands. The only layer that imports Hydra.

harness.cli.configs.register() puts in Hydra's ConfigStore what conf/ would otherwise repeat from
Python (the run specification, one option per built-in cell, init and task, `--help`'s key list); the
Hydra entry point (harness.cli.main) calls it. Importing this package registers nothing and loads no
torch, so that harness.plot and harness.collect draw stored tables without a model.
"""
