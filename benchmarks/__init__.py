"""The benchmarks ``make bench`` runs: outside the library's import path, since nothing of it needs them."""
