"""A synthetic oncology federation: hospitals (OMOP CDM tables), insurers, pharmacies.

The same seed gives the same bytes. Every product and indication lies inside the demo
categories, so the demo use case runs without category errors.

Hospitals hold OMOP CDM shaped tables: person, condition_occurrence, drug_exposure,
observation_period and episode (one Treatment Regimen episode per treatment line,
episode_number = the line). The last hospital records no episodes: its lines must be
derived from drug_exposure with mpc.connectors.lines.derive_lines. The generator follows
that rule, so the recorded episodes and the derived lines agree: administrations of one line
are at most a few weeks apart, and a new line either switches to products the previous line
did not use or follows a gap of more than GAP_DAYS.

Times on treatment follow the products' pivotal trials (see _TIME_ON_TREATMENT): per
product, indication and line a Weibull distribution with a median of, for instance, 18 months for
first-line osimertinib (FLAURA) and 10 in later lines, durvalumab consolidation after
chemoradiation for a year at most (PACIFIC) and about 6 months in extensive-stage SCLC
(CASPIAN), olaparib maintenance in ovarian cancer for 16 months (two years at most). Lines
still running at the data cut-off are cut there. Each patient's observation period runs from
diagnosis (or, at a hospital they were referred to, a few weeks before their first
administration there) to the cut-off, or to death or loss to follow-up some months after
their last treatment; every hospital that treated a patient observes them until then.

Some patients are referred for a later line to another hospital (never to the last one, so
its locally derived lines are the patients' true lines). The receiving hospital knows the
history from the referral letter: its episodes carry the true line number, and the patient
has a different local person_id there. Pseudonyms are the same keyed hash of a synthetic
citizen number at every party, as a trusted third party would issue them.

Insurers hold claims per administration, arriving two to three months late, for claim dates
in 2023-2024. Pharmacies hold packs dispensed per product and month for the share of
patients they serve. Concept ids are the standard concepts as commonly mapped; they are
decoration: the demo reads the *_source_value columns.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mpc.connectors.lines import GAP_DAYS, REGIMEN_WINDOW_DAYS
from mpc.synth.treatments import INDICATIONS, LINES, PRODUCTS, _pseudonym

QUARTERS = tuple(f"{y}Q{q}" for y in (2023, 2024) for q in (1, 2, 3, 4))
MONTHS = tuple(f"{y}-{m:02d}" for y in (2023, 2024) for m in range(1, 13))
FORMATS = ("csv", "parquet")

PERSON_COLUMNS = ("person_id", "gender_concept_id", "year_of_birth", "person_source_value")
CONDITION_COLUMNS = ("condition_occurrence_id", "person_id", "condition_concept_id",
                     "condition_start_date", "condition_source_value")
DRUG_EXPOSURE_COLUMNS = ("drug_exposure_id", "person_id", "drug_concept_id",
                         "drug_exposure_start_date", "drug_exposure_end_date",
                         "drug_source_value")
OBSERVATION_PERIOD_COLUMNS = ("observation_period_id", "person_id",
                              "observation_period_start_date", "observation_period_end_date",
                              "period_type_concept_id")
EPISODE_COLUMNS = ("episode_id", "person_id", "episode_concept_id", "episode_start_date",
                   "episode_end_date", "episode_number", "episode_object_concept_id",
                   "episode_source_value")
CLAIM_COLUMNS = ("pseudonym", "product", "claim_date", "quarter", "amount")
DISPENSING_COLUMNS = ("product", "month", "packs")

_DAY = np.datetime64("1970-01-01", "D")
_FIRST_DIAGNOSIS = np.datetime64("2021-01-01", "D")
_LAST_FIRST_LINE = np.datetime64("2024-11-30", "D")
_CUTOFF = np.datetime64("2024-12-31", "D")  # data extraction: nothing starts later
_CLAIMS_FROM = np.datetime64("2023-01-01", "D")

_MALE, _FEMALE = 8507, 8532
_TREATMENT_REGIMEN = 32531  # episode_concept_id of a treatment regimen episode
_EHR = 32817  # period_type_concept_id: the hospital's electronic health record
_DRUG_CONCEPT = {"osimertinib": 35605522, "durvalumab": 1594034, "olaparib": 45892579}
_CONDITION_CONCEPT = {"NSCLC": 4115276, "SCLC": 4311499, "breast": 4112853,
                      "ovarian": 4181351, "prostate": 4163261}

_INDICATION_P = (0.42, 0.12, 0.18, 0.13, 0.15)  # in INDICATIONS order
_MALE_P = (0.55, 0.52, 0.01, 0.0, 1.0)
_AGE_MEAN = (68, 67, 60, 64, 71)
_REGIMENS = (("osimertinib",), ("durvalumab",), ("olaparib",), ("durvalumab", "olaparib"))
# P(regimen | indication), rows in INDICATIONS order. Rare links (osimertinib after SCLC
# transformation, durvalumab in trials) give cells only some hospitals fill.
_REGIMEN_P = np.array([
    [0.56, 0.44, 0.0, 0.0],  # NSCLC: EGFR-mutant osimertinib; durvalumab consolidation
    [0.03, 0.97, 0.0, 0.0],  # SCLC: durvalumab with platinum-etoposide
    [0.005, 0.015, 0.98, 0.0],  # breast: BRCA-mutant olaparib
    [0.0, 0.03, 0.80, 0.17],  # ovarian: olaparib maintenance, with durvalumab (DUO-O)
    [0.0, 0.02, 0.98, 0.0],  # prostate: olaparib
])
# Time on treatment: per product and indication (None: any other), for lines 1, 2 and 3+,
# the median in months and the fixed longest duration in months (None: until
# progression), roughly as in the pivotal trials and Dutch practice.
_TIME_ON_TREATMENT: dict[str, dict[str | None, tuple[tuple[float, float, float],
                                                    tuple[float | None, ...]]]] = {
    # FLAURA first line (median exposure ~20 months, PFS ~19); AURA3 later (PFS ~10).
    "osimertinib": {None: ((18.0, 10.0, 6.0), (None, None, None))},
    "durvalumab": {
        "NSCLC": ((10.0, 4.0, 3.0), (12.0, 12.0, 12.0)),  # PACIFIC: a year at most
        "SCLC": ((6.0, 3.0, 2.5), (None, None, None)),  # CASPIAN, until progression
        "ovarian": ((12.0, 8.0, 6.0), (24.0, None, None)),  # DUO-O maintenance
        None: ((5.0, 4.0, 3.0), (12.0, 12.0, 12.0)),  # trials
    },
    "olaparib": {
        "ovarian": ((16.0, 12.0, 8.0), (24.0, None, None)),  # SOLO-1 (2 years), SOLO-2
        "breast": ((9.0, 7.0, 5.0), (None, None, None)),  # OlympiAD
        "prostate": ((7.5, 6.0, 5.0), (None, None, None)),  # PROfound
        None: ((9.0, 7.0, 5.0), (None, None, None)),
    },
}
_DURATION_SHAPE = 1.3  # Weibull shape: the stopping rate rises slowly with time
_MONTH_DAYS = 30.44
_SWITCH_P = 0.75  # a later line prefers another common regimen, if there is one
_N_LINES_P = (0.45, 0.32, 0.15, 0.08)  # lines planned per patient: 1, 2, 3, 4
# Follow-up after a patient's last treatment: the chance to die (if before the cut-off),
# by indication in INDICATIONS order, the mean survival after it, and loss to follow-up.
_DEATH_P = (0.45, 0.75, 0.35, 0.30, 0.40)
_DEATH_MEAN_DAYS = 240
_LOST_P = 0.04
_REFERRAL_P = 0.38  # of patients with a later line, referred to another hospital for it
_HOSPITAL_W = (0.5, 0.3, 0.2, 0.15, 0.1)  # by position; later parties take the last
_INSURER_W = (0.6, 0.4, 0.3, 0.2)
_PHARMACY_SHARE = (0.12, 0.02)  # share of all patients a pharmacy dispenses to
_PACKS = {"osimertinib": 1, "durvalumab": 3, "olaparib": 2}  # per dispensing (vials: 500 mg)
_PRICE = {"osimertinib": 5600, "durvalumab": 7300, "olaparib": 5100}  # euros, approximately


@dataclass(frozen=True)
class SynthResult:
    """What generate_federation wrote, by party."""

    hospitals: dict[str, Path]  # party -> folder with OMOP tables
    insurers: dict[str, Path]  # party -> claims file
    pharmacies: dict[str, Path]  # party -> dispensing file


@dataclass
class _Exposures:
    """All administrations of the federation, one entry per row of a drug_exposure table."""

    patient: list[int]
    hospital: list[int]
    line: list[int]
    drug: list[str]
    start: list[int]  # days since 1970-01-01
    end: list[int]
    regimen: list[str]  # the line's products joined by "+"


def _weights(table: Sequence[float], n: int) -> np.ndarray:
    w = np.array([table[min(i, len(table) - 1)] for i in range(n)], dtype=float)
    return w / w.sum()


def _days(d: np.datetime64) -> int:
    return int((d - _DAY).astype(int))


def time_on_treatment(drug: str, indication: str, line: int) -> tuple[float, float | None]:
    """The median time on treatment in months of `drug` in `line` (1, 2, ...) for
    `indication`, and its fixed longest duration in months (None: until progression)."""
    table = _TIME_ON_TREATMENT[drug]
    medians, caps = table.get(indication, table[None])
    k = min(line, 3) - 1
    return medians[k], caps[k]


def _schedule(rng: np.random.Generator, drug: str, indication: str, line: int,
              first: int) -> tuple[np.ndarray, np.ndarray]:
    """Start and end days of one drug's administrations in a line, gaps at most ~7 weeks.

    The time on treatment is drawn from a Weibull distribution with the product's median
    for the indication and line (time_on_treatment), cut at a fixed duration where the
    regimen has one; administrations follow each other until it is over.
    """
    median, cap = time_on_treatment(drug, indication, line)
    scale = median / np.log(2) ** (1 / _DURATION_SHAPE)
    months = scale * float(rng.weibull(_DURATION_SHAPE))
    if cap is not None:
        months = min(months, cap)
    days = int(round(months * _MONTH_DAYS))
    if drug == "durvalumab":
        supply, shortest = 1, 21  # an infusion: ends the day it starts
    else:
        supply = 30 if drug == "osimertinib" else 28  # tablets for a month
        shortest = supply - 2
    count = max(days - supply, 0) // shortest + 1  # enough intervals to cover `days`
    if drug == "durvalumab":
        base = np.full(count - 1, 28)
        if indication == "SCLC":  # 4 cycles every 3 weeks with chemotherapy, then 4-weekly
            base[:3] = 21
        intervals = base + rng.integers(0, 4, count - 1)
    else:
        intervals = supply + rng.integers(-2, 4, count - 1)
    delayed = rng.random(count - 1) < 0.05  # toxicity or holidays, never a 90-day gap
    intervals = intervals + np.where(delayed, rng.integers(7, 22, count - 1), 0)
    starts = first + np.concatenate([[0], np.cumsum(intervals)])
    # The last administration's supply ends by the drawn time on treatment.
    starts = starts[starts - first <= max(days - supply, 0)]
    return starts, starts + supply - 1


def _next_regimen(rng: np.random.Generator, indication: int, current: int) -> int:
    p = _REGIMEN_P[indication].copy()
    # Switch only to a common alternative: rare regimens stay rare in later lines.
    common = p >= 0.1
    if rng.random() < _SWITCH_P and common.sum() > common[current]:
        p = np.where(common, p, 0.0)
        p[current] = 0.0
    return int(rng.choice(len(_REGIMENS), p=p / p.sum()))


def _treat(rng: np.random.Generator, n_patients: int, indication: np.ndarray,
           home: np.ndarray, n_hospitals: int, first_line: np.ndarray) -> _Exposures:
    """Every patient's lines and administrations, in patient order."""
    ex = _Exposures([], [], [], [], [], [], [])
    cutoff = _days(_CUTOFF)
    n_lines = rng.choice(len(_N_LINES_P), size=n_patients, p=_N_LINES_P) + 1
    # Referral targets: any other hospital but the last, which has no episodes and must
    # see each of its patients' whole history to derive lines locally.
    targets = np.arange(max(n_hospitals - 1, 0))
    hospital_w = _weights(_HOSPITAL_W, n_hospitals)
    for i in range(n_patients):
        ind, label = int(indication[i]), INDICATIONS[int(indication[i])]
        refer_at, dest = n_lines[i], -1  # 0-based line index from which the patient is elsewhere
        options = targets[targets != home[i]]
        if n_lines[i] > 1 and options.size and rng.random() < _REFERRAL_P:
            refer_at = int(rng.integers(1, n_lines[i]))
            w = hospital_w[options]
            dest = int(rng.choice(options, p=w / w.sum()))
        start = int(first_line[i])
        regimen = int(rng.choice(len(_REGIMENS), p=_REGIMEN_P[ind]))
        line_start = line_end = start
        for k in range(n_lines[i]):
            if k:
                previous, regimen = regimen, _next_regimen(rng, ind, regimen)
                if set(_REGIMENS[regimen]) & set(_REGIMENS[previous]):
                    gap = int(rng.integers(GAP_DAYS + 10, 301))  # same drug only after a gap
                else:
                    gap = int(rng.integers(7, 61))  # a switch
                start = max(line_end + gap, line_start + REGIMEN_WINDOW_DAYS + 1)
            if start > cutoff:
                break
            hospital = int(home[i]) if k < refer_at else dest
            line_start, line_end = start, start
            for drug in _REGIMENS[regimen]:  # combination drugs start the same day
                starts, ends = _schedule(rng, drug, label, k + 1, start)
                keep = starts <= cutoff
                starts, ends = starts[keep].tolist(), ends[keep].tolist()
                line_end = max(line_end, max(ends))
                m = len(starts)
                ex.patient += [i] * m
                ex.hospital += [hospital] * m
                ex.line += [k + 1] * m
                ex.drug += [drug] * m
                ex.start += starts
                ex.end += ends
                ex.regimen += ["+".join(_REGIMENS[regimen])] * m
    return ex


def _follow_up(rng: np.random.Generator, ex: pd.DataFrame, indication: np.ndarray,
               n_patients: int) -> np.ndarray:
    """Each patient's last day of observation: death or loss to follow-up some time after
    the end of their last treatment, else the data cut-off (never before an
    administration)."""
    cutoff = _days(_CUTOFF)
    last_end = ex.groupby("patient")["end"].max().reindex(range(n_patients),
                                                          fill_value=cutoff).to_numpy()
    dies = rng.random(n_patients) < np.array(_DEATH_P)[indication]
    death = last_end + 30 + rng.exponential(_DEATH_MEAN_DAYS, n_patients).astype(np.int64)
    lost = rng.random(n_patients) < _LOST_P
    lost_day = last_end + rng.integers(30, 541, n_patients)
    until = np.full(n_patients, cutoff, dtype=np.int64)
    until = np.where(dies, np.minimum(until, death), until)
    return np.where(lost, np.minimum(until, lost_day), until)


def _iso(days: np.ndarray) -> np.ndarray:
    return np.datetime_as_string(np.asarray(days, dtype=np.int64).astype("datetime64[D]"))


def _write(path: Path, columns: Mapping[str, np.ndarray], dates: Sequence[str],
           fmt: str) -> Path:
    """One table; dates are ISO strings in CSV and DATE columns in Parquet."""
    path = path.with_suffix(f".{fmt}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        frame = pd.DataFrame({c: _iso(v) if c in dates else v for c, v in columns.items()})
        frame.to_csv(path, index=False, lineterminator="\n")
    else:
        arrays = {c: pa.array(np.asarray(v, dtype=np.int64).astype("datetime64[D]"))
                  if c in dates else pa.array(v) for c, v in columns.items()}
        pq.write_table(pa.table(arrays), path)
    return path


def _write_hospital(folder: Path, h: int, with_episodes: bool, ex: pd.DataFrame,
                    pseudonyms: list[str], indication: np.ndarray, male: np.ndarray,
                    birth_year: np.ndarray, diagnosis: np.ndarray,
                    observed_until: np.ndarray, rng: np.random.Generator, fmt: str) -> None:
    rows = ex[ex["hospital"] == h]
    patients = np.unique(rows["patient"].to_numpy())
    # Local ids: a different number for the same patient at each hospital, in no
    # particular relation to the pseudonym.
    local = np.empty(len(pseudonyms), dtype=np.int64)
    local[patients[rng.permutation(len(patients))]] = (h + 1) * 1_000_000 + 1 + np.arange(
        len(patients))
    by_id = patients[np.argsort(local[patients])]
    ids = local[by_id]
    labels = [INDICATIONS[int(j)] for j in indication[by_id]]
    _write(folder / "person", {
        "person_id": ids,
        "gender_concept_id": np.where(male[by_id], _MALE, _FEMALE),
        "year_of_birth": birth_year[by_id],
        "person_source_value": np.array([pseudonyms[j] for j in by_id], dtype=object),
    }, (), fmt)
    _write(folder / "condition_occurrence", {
        "condition_occurrence_id": np.arange(1, len(ids) + 1),
        "person_id": ids,
        "condition_concept_id": np.array([_CONDITION_CONCEPT[x] for x in labels], dtype=np.int64),
        "condition_start_date": diagnosis[by_id],
        "condition_source_value": np.array(labels, dtype=object),
    }, ("condition_start_date",), fmt)

    rows = rows.assign(person_id=local[rows["patient"].to_numpy()])
    rows = rows.sort_values(["person_id", "start", "drug"], kind="stable")
    drugs = rows["drug"].to_numpy()
    _write(folder / "drug_exposure", {
        "drug_exposure_id": np.arange(1, len(rows) + 1),
        "person_id": rows["person_id"].to_numpy(),
        "drug_concept_id": np.array([_DRUG_CONCEPT[d] for d in drugs], dtype=np.int64),
        "drug_exposure_start_date": rows["start"].to_numpy(),
        "drug_exposure_end_date": rows["end"].to_numpy(),
        "drug_source_value": drugs.astype(object),
    }, ("drug_exposure_start_date", "drug_exposure_end_date"), fmt)

    # Observed here from diagnosis (the first hospital) or a few weeks before the first
    # administration (a referral), until death, loss to follow-up or the cut-off: a
    # hospital that referred a patient on keeps seeing them.
    here = rows.groupby("patient").agg(first=("start", "min"), line=("line", "min"))
    n = len(by_id)
    first_here = here["first"].reindex(by_id).to_numpy()
    begin = np.where(here["line"].reindex(by_id).to_numpy() == 1,
                     np.minimum(diagnosis[by_id], first_here) - rng.integers(0, 31, n),
                     first_here - rng.integers(14, 46, n))
    _write(folder / "observation_period", {
        "observation_period_id": np.arange(1, n + 1),
        "person_id": ids,
        "observation_period_start_date": begin,
        "observation_period_end_date": observed_until[by_id],
        "period_type_concept_id": np.full(n, _EHR),
    }, ("observation_period_start_date", "observation_period_end_date"), fmt)
    if not with_episodes:
        return
    episodes = (rows.groupby(["person_id", "line"], sort=True)
                .agg(start=("start", "min"), end=("end", "max"), regimen=("regimen", "first"))
                .reset_index())
    regimens = episodes["regimen"].to_numpy()
    _write(folder / "episode", {
        "episode_id": np.arange(1, len(episodes) + 1),
        "person_id": episodes["person_id"].to_numpy(),
        "episode_concept_id": np.full(len(episodes), _TREATMENT_REGIMEN),
        "episode_start_date": episodes["start"].to_numpy(),
        "episode_end_date": episodes["end"].to_numpy(),
        "episode_number": episodes["line"].to_numpy(),
        # The regimen's first product stands in for a regimen concept.
        "episode_object_concept_id": np.array(
            [_DRUG_CONCEPT[r.split("+")[0]] for r in regimens], dtype=np.int64),
        "episode_source_value": regimens.astype(object),
    }, ("episode_start_date", "episode_end_date"), fmt)


def _check_names(groups: Sequence[Sequence[str]]) -> None:
    names = [p for group in groups for p in group]
    if len(set(names)) != len(names):
        raise ValueError("party names must be unique across hospitals, insurers, pharmacies")
    for party in names:
        if not party or party in (".", "..") or "/" in party or "\\" in party:
            raise ValueError(f"party name {party!r} cannot be a folder name")


def generate_federation(out_dir: Path, *,
                        hospitals: Sequence[str] = ("hospital_a", "hospital_b", "hospital_c"),
                        insurers: Sequence[str] = ("insurer_a", "insurer_b"),
                        pharmacies: Sequence[str] = ("pharmacy_a", "pharmacy_b"),
                        patients: int = 6000, seed: int = 7, fmt: str = "csv") -> SynthResult:
    """Write a synthetic federation of `patients` oncology patients under out_dir.

    out_dir/<hospital>/omop/{person,condition_occurrence,drug_exposure,observation_period,
    episode}.<fmt> (no episode table at the last hospital), out_dir/<insurer>/claims.<fmt> and
    out_dir/<pharmacy>/dispensing.<fmt>; fmt is "csv" or "parquet".
    """
    hospitals, insurers, pharmacies = list(hospitals), list(insurers), list(pharmacies)
    if not hospitals:
        raise ValueError("give at least one hospital")
    _check_names([hospitals, insurers, pharmacies])
    if patients < 1:
        raise ValueError("patients must be at least 1")
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {', '.join(FORMATS)}, not {fmt!r}")

    rng = np.random.default_rng(seed)  # demo data: reproducibility matters, not secrecy
    key = hashlib.sha256(f"mpc-demo-pseudonym-key:{seed}".encode()).digest()
    citizens = rng.choice(900_000_000, size=patients, replace=False) + 100_000_000
    pseudonyms = [_pseudonym(key, str(c)) for c in citizens.tolist()]
    indication = rng.choice(len(INDICATIONS), size=patients, p=_INDICATION_P)
    male = rng.random(patients) < np.array(_MALE_P)[indication]
    span = _days(_LAST_FIRST_LINE) - _days(_FIRST_DIAGNOSIS) - 60
    first_line = _days(_FIRST_DIAGNOSIS) + 60 + rng.integers(0, span + 1, patients)
    diagnosis = first_line - rng.integers(14, 61, patients)
    age = np.clip(np.round(rng.normal(np.array(_AGE_MEAN)[indication], 9)), 28, 92)
    diagnosis_year = diagnosis.astype("datetime64[D]").astype("datetime64[Y]").astype(int) + 1970
    birth_year = (diagnosis_year - age).astype(np.int64)
    home = rng.choice(len(hospitals), size=patients, p=_weights(_HOSPITAL_W, len(hospitals)))
    insurer = rng.choice(max(len(insurers), 1), size=patients,
                         p=_weights(_INSURER_W, max(len(insurers), 1)))
    share = np.array([_PHARMACY_SHARE[min(i, len(_PHARMACY_SHARE) - 1)]
                      for i in range(len(pharmacies))])
    share = share / max(1.0, share.sum() / 0.9)  # many pharmacies still leave some patients
    pharmacy = rng.choice(len(pharmacies) + 1, size=patients,
                          p=np.append(share, 1.0 - share.sum()))  # last: none of ours

    ex = pd.DataFrame(vars(_treat(rng, patients, indication, home, len(hospitals),
                                  first_line)))
    observed_until = _follow_up(rng, ex, indication, patients)
    out_dir = Path(out_dir)
    result = SynthResult({}, {}, {})
    for h, party in enumerate(hospitals):
        folder = out_dir / party / "omop"
        _write_hospital(folder, h, h < len(hospitals) - 1, ex, pseudonyms, indication, male,
                        birth_year, diagnosis, observed_until, rng, fmt)
        result.hospitals[party] = folder

    patient = ex["patient"].to_numpy()
    start = ex["start"].to_numpy()
    drugs = ex["drug"].to_numpy()
    claim = start + rng.integers(50, 96, len(ex))  # claims arrive two to three months late
    price = np.array([_PRICE[d] for d in drugs])
    amount = np.round(price * rng.uniform(0.95, 1.05, len(ex))).astype(np.int64)
    in_range = (claim >= _days(_CLAIMS_FROM)) & (claim <= _days(_CUTOFF))
    claim_day = claim.astype("datetime64[D]")
    year = claim_day.astype("datetime64[Y]").astype(int) + 1970
    month = claim_day.astype("datetime64[M]").astype(int) % 12
    quarter = np.array([f"{y}Q{m // 3 + 1}" for y, m in zip(year, month, strict=True)],
                       dtype=object)
    pseudo = np.array(pseudonyms, dtype=object)[patient]
    for j, party in enumerate(insurers):
        mine = np.flatnonzero(in_range & (insurer[patient] == j))
        mine = mine[np.lexsort((drugs[mine], pseudo[mine], claim[mine]))]
        result.insurers[party] = _write(out_dir / party / "claims", {
            "pseudonym": pseudo[mine], "product": drugs[mine].astype(object),
            "claim_date": claim[mine], "quarter": quarter[mine], "amount": amount[mine],
        }, ("claim_date",), fmt)

    month_index = start.astype("datetime64[D]").astype("datetime64[M]").astype(int) - (
        np.datetime64("2023-01", "M").astype(int))
    product_index = np.array([PRODUCTS.index(d) for d in drugs], dtype=np.int64)
    packs = np.array([_PACKS[d] for d in drugs], dtype=np.int64)
    dispensed = (month_index >= 0) & (month_index < len(MONTHS))
    for j, party in enumerate(pharmacies):
        mine = dispensed & (pharmacy[patient] == j)
        grid = np.zeros((len(MONTHS), len(PRODUCTS)), dtype=np.int64)
        np.add.at(grid, (month_index[mine], product_index[mine]), packs[mine])
        result.pharmacies[party] = _write(out_dir / party / "dispensing", {
            "product": np.array(PRODUCTS * len(MONTHS), dtype=object),
            "month": np.repeat(np.array(MONTHS, dtype=object), len(PRODUCTS)),
            "packs": grid.ravel(),
        }, (), fmt)
    return result


__all__ = ["FORMATS", "INDICATIONS", "LINES", "MONTHS", "PRODUCTS", "QUARTERS", "SynthResult",
           "generate_federation"]
