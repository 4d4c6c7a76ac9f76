"""Local fakes of Zuora and Acumatica: real HTTP servers with seeded data and fault knobs.

Both are laid out alike (app, routes, handlers, backend/ by API area, errors, control, faults,
config); README.md in this directory says which module holds what.

Only the CLI's ``sandbox``/``demo`` commands, the benchmarks and the tests import this package.
"""
