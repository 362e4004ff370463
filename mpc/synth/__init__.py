"""Synthetic demo data: reproducible from a seed, never real patients."""

from mpc.synth.omop import MONTHS, QUARTERS, SynthResult, generate_federation
from mpc.synth.treatments import INDICATIONS, LINES, PRODUCTS, generate_treatments

__all__ = ["INDICATIONS", "LINES", "MONTHS", "PRODUCTS", "QUARTERS", "SynthResult",
           "generate_federation", "generate_treatments"]
