"""Benchmarks: batchd against the script users write today with the official SDK (issue 8).

Run every scenario and write ``results/latest.json`` and ``results/latest.md``::

    .venv/bin/python -m tests.benchmarks [--quick] [--out tests/benchmarks/results]

Outside the default test run (pytest's ``testpaths`` do not include this folder). The method,
every setting and every definition are in ``README.md`` next to this file.
"""
