"""The synthetic-dataset writer, its files, filters and command-line interface."""
