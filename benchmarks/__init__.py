"""Benchmarks, outside the product path: the inference path against the plain eager model
(``python -m benchmarks.inference``) and the whole pipeline per stage (``python -m benchmarks.pipeline``)."""
