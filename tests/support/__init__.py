"""What the tests share besides fixtures: paths, fake data, page and browser helpers, hostile files.

Tests import it one way, as ``tests.support``; ``conftest.py`` holds only fixtures and hooks.
"""
