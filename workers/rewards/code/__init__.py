"""The ``code`` reward kind: programs from completions run against a sample's test cases, in a sandbox
(bubblewrap, :mod:`rewardq.workers.process.sandbox`) or on a Sandbox Fusion server.

One job per module: :mod:`.cases` reads the tests column, :mod:`.programs` finds the program in a completion,
:mod:`.harness` builds the script a program runs as, :mod:`.compare` judges an output, :mod:`.runners` runs
one case (locally or on Sandbox Fusion), :mod:`.reward` scores a chunk.
"""
