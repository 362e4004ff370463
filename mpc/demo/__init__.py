"""Everything `mpc demo` needs: a local federation of real processes on loopback."""

from mpc.demo.federation import LocalFederation, PartySetup

__all__ = ["LocalFederation", "PartySetup"]
