"""Workloads behind `kdp bench` and bench/: deterministic tables, queries and captures.

Each module has main(args) that runs kdp beside its peers and prints one table.
"""
