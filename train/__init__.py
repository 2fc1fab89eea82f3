"""Training, evaluation and export scripts."""
