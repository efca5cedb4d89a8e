"""The pure protocol core: no I/O, no clock, no randomness of its own."""
