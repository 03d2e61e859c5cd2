"""The shared runner of the paper's experiments."""
