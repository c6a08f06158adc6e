"""Hypothesis fuzz tests of the carrier webhook endpoint, one module per carrier."""
