"""Benchmarks of the course against reference recipes and the machine (`make bench`)."""
