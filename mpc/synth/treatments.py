"""Demo treatment records for a few hospitals: one CSV per party, the same seed, the same bytes.

Every value lies inside the demo categories below, so the default demo use case runs
without category errors. Hospitals differ in size, so some cells of the joint table are
small and get suppressed. Patients are identified by the same keyed hash of a synthetic
citizen number at every hospital, as a trusted third party would issue pseudonyms, and
some patients are treated at two hospitals.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
from collections.abc import Sequence
from pathlib import Path

import numpy as np

PRODUCTS = ("osimertinib", "durvalumab", "olaparib")
INDICATIONS = ("NSCLC", "SCLC", "breast", "ovarian", "prostate")
LINES = ("1", "2", "3+")
COLUMNS = ("pseudonym", "product", "indication", "line", "cycles")

_PRODUCT_P = (0.45, 0.35, 0.20)
# P(indication | product), rows in PRODUCTS order, columns in INDICATIONS order. Rare
# links (osimertinib in SCLC, off-label use in trials) give cells that only a few
# hospitals fill, which disclosure control must suppress.
_INDICATION_P = np.array([
    [0.945, 0.05, 0.005, 0.00, 0.00],  # osimertinib: EGFR-mutant NSCLC
    [0.595, 0.40, 0.00, 0.00, 0.005],  # durvalumab: NSCLC, extensive-stage SCLC
    [0.00, 0.00, 0.35, 0.45, 0.20],  # olaparib: BRCA-mutant breast, ovarian, prostate
])
_FIRST_LINE_P = (0.60, 0.30, 0.10)
_NEXT_LINE_P = 0.25  # chance a patient also has a row for the following line
_SCALES = (1.0, 0.6, 0.3, 0.15)  # hospital size by party index; later parties take the last
_SHARED = 0.05  # share of a hospital's patients also treated at the previous hospital
_PSEUDONYM_HEX = 32


def _pseudonym(key: bytes, citizen: str) -> str:
    return hmac.new(key, citizen.encode(), hashlib.sha256).hexdigest()[:_PSEUDONYM_HEX]


def _rows_for_patient(rng: np.random.Generator, pseudonym: str) -> list[tuple[str, ...]]:
    product = int(rng.choice(len(PRODUCTS), p=_PRODUCT_P))
    indication = int(rng.choice(len(INDICATIONS), p=_INDICATION_P[product]))
    line = int(rng.choice(len(LINES), p=_FIRST_LINE_P))
    rows = [(product, line)]
    if line + 1 < len(LINES) and rng.random() < _NEXT_LINE_P:
        # The next line keeps the indication; the product is one used for that indication.
        weights = np.array(_PRODUCT_P) * _INDICATION_P[:, indication]
        rows.append((int(rng.choice(len(PRODUCTS), p=weights / weights.sum())), line + 1))
    out: list[tuple[str, ...]] = []
    for prod, ln in rows:
        cycles = int(np.clip(rng.poisson(6) + 1, 1, 30))
        out.append((pseudonym, PRODUCTS[prod], INDICATIONS[indication], LINES[ln], str(cycles)))
    return out


def generate_treatments(out_dir: Path, parties: Sequence[str], patients_per_party: int = 2000,
                        seed: int = 7) -> dict[str, Path]:
    """Write out_dir/<party>/treatments.csv for each party; returns party -> file."""
    parties = list(parties)
    if not parties:
        raise ValueError("give at least one party")
    if len(set(parties)) != len(parties):
        raise ValueError("party names must be unique")
    for party in parties:
        if not party or party in (".", "..") or "/" in party or "\\" in party:
            raise ValueError(f"party name {party!r} cannot be a folder name")
    if patients_per_party < 1:
        raise ValueError("patients_per_party must be at least 1")

    rng = np.random.default_rng(seed)  # demo data: reproducibility matters, not secrecy
    key = hashlib.sha256(f"mpc-demo-pseudonym-key:{seed}".encode()).digest()
    sizes = [max(1, round(patients_per_party * _SCALES[min(i, len(_SCALES) - 1)]))
             for i in range(len(parties))]
    # Distinct 9-digit synthetic citizen numbers, enough for every patient everywhere.
    pool = (rng.choice(900_000_000, size=sum(sizes), replace=False) + 100_000_000).tolist()

    out_dir = Path(out_dir)
    paths: dict[str, Path] = {}
    taken = 0
    previous: list[str] = []
    for party, size in zip(parties, sizes, strict=True):
        n_shared = min(round(size * _SHARED), len(previous))
        shared = [previous[i] for i in sorted(rng.choice(len(previous), n_shared, replace=False))]
        fresh = [str(c) for c in pool[taken: taken + size - n_shared]]
        taken += size - n_shared
        citizens = shared + fresh
        order = rng.permutation(len(citizens))  # shared patients are not all at the top
        citizens = [citizens[i] for i in order]

        rows = []
        for citizen in citizens:
            rows.extend(_rows_for_patient(rng, _pseudonym(key, citizen)))
        path = out_dir / party / "treatments.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(COLUMNS)
            writer.writerows(rows)
        paths[party] = path
        previous = citizens
    return paths
