"""Synthetic demo data: reproducible from a seed, never real patients."""

from mpc.synth.treatments import INDICATIONS, LINES, PRODUCTS, generate_treatments

__all__ = ["INDICATIONS", "LINES", "PRODUCTS", "generate_treatments"]
