"""Everything `mpc demo` needs: a local federation of real processes on loopback."""

from mpc.demo.bounds import DEMO_BOUNDS, demo_bounds
from mpc.demo.federation import FederationStartError, LocalFederation, PartySetup

__all__ = ["DEMO_BOUNDS", "FederationStartError", "LocalFederation", "PartySetup",
           "demo_bounds"]
