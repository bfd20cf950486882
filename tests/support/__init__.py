"""Test-only helpers shared by the suite, the benchmarks and the demo client."""
