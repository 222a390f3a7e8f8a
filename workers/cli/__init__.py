"""The ``rewardq`` command line, one module per command group; the top of the import graph."""
