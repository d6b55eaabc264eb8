"""The pure-numpy twins of the kernels: readable references the tests hold the kernels to
(analytic cases, hypothesis invariants) and the benchmarks time them against. Not part of
the installed package."""
