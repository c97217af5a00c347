"""Benchmarks: API calls, time against the rate-limit bound, memory as the CRM grows.

Run ``python -m bench.run`` (see the README's Benchmarks section).
"""
