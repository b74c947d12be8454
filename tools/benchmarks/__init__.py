"""`make bench`: floors, hops, HTTP paths, end-to-end latency; see docs/benchmarks.md."""
