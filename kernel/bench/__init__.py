"""Benchmarks: workload registry, runner, reports and the regression gate."""
