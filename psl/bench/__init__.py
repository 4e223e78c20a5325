"""Benchmarks behind `psl bench`: each compares psl against a baseline measured in the same run."""
