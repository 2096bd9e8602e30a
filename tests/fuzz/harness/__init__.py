"""One module per fuzz target (sometimes two targets), importing only its parser.

A fuzzer imports its harness module under atheris's instrumentation (run.py),
so a target pays for importing and instrumenting what it exercises and no more;
`tests/fuzz/harnesses.py` gathers them all for pytest and seeds.py.
"""
