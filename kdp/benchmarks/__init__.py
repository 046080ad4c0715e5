"""Workloads behind `kdp bench` and bench/: deterministic tables, queries and captures.

    read, lpm, conntrack, pipeline   the suites: main(args) runs kdp beside its peers and
                                     prints one table (measure/run return the figures)
    synth, cluster                   workload generators (a capture, a cluster snapshot)
    peers/                           the peers: foreign packages, programs, the kernel

Benchmarks are not the product: nothing in kdp outside this package (and the `bench`
command, which imports a suite by name when it runs) imports it, and importing a suite
or a generator imports no peer: a suite imports kdp.benchmarks.peers inside the function
that runs the measurement (tests/test_bench_isolation.py checks both).
"""
