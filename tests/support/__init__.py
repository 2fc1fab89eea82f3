"""What the tests share besides fixtures: paths, AppTest page helpers, hostile files.

Tests import it one way, as ``tests.support``; ``conftest.py`` holds only fixtures and hooks.
The browser harness and the fake NIH cells, which the benchmarks use too, live in ``harness``.
"""
