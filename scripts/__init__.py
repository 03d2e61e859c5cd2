"""Command-line scripts of the suite: benchmarks, and the paper's tables and figures."""
