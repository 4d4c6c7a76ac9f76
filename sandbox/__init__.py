"""Local fakes of Zuora and Acumatica: real HTTP servers with seeded data and fault knobs.

Only the CLI's ``sandbox``/``demo`` commands, the benchmarks and the tests import this package.
"""
