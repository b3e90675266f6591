"""The built-in cells, a module each (rnn, lstm and gru share torch's equations in `classic`).

A module here that defines CELL_TYPES (a tuple of harness.core.protocol.CellType) registers those cells:
harness.core.networks imports every module of this package and collects them, and the command line
offers each as cell=<name>. See harness.core.networks for how to add one.
"""
