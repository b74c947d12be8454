"""Developer tools: the local runner, the demo, benchmarks. Not imported by the services."""
