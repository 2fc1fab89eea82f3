"""What the tests and the benchmarks share: the browser harness and fake NIH cells.

Not part of the installed ``malgan`` package; imported from the repository root, as
``harness.browser`` and ``harness.fakes``.
"""
