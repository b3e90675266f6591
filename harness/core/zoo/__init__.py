"""The built-in cells, a module each (rnn, lstm and gru share torch's equations in `classic`).

A cell's module defines its network and `build(name, activation, input_size, hidden_size, num_layers,
**options)`; its row in harness.core.networks.CELLS names the module, so that the registry (and
everything that only draws stored tables) reads without importing torch. See harness.core.networks for
how to add one.
"""
