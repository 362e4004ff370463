"""Shared test helpers: spec texts and the plaintext reference computation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from mpc.config.spec import DisclosureRules, UseCaseSpec
from mpc.connectors.lines import derive_lines, line_label

DEMO_CATEGORIES = {
    "product": ["osimertinib", "durvalumab", "olaparib"],
    "indication": ["NSCLC", "SCLC", "breast", "ovarian", "prostate"],
    "line": ["1", "2", "3+"],
}


def spec_text(name: str, parties: Sequence[str], *, measure: str = "count",
              group_by: Sequence[str] = ("product", "indication", "line"),
              categories: Mapping[str, Sequence[str]] = DEMO_CATEGORIES,
              min_cell: int = 10, min_contributors: int = 1, suppress_zero: bool = False,
              recipients: Sequence[str] = ("coordinator",),
              dataset: str = "treatments") -> bytes:
    def toml_list(values: Sequence[str]) -> str:
        return "[" + ", ".join(f'"{v}"' for v in values) + "]"

    lines = [
        f'name = "{name}"', 'kind = "aggregate"', f"parties = {toml_list(parties)}",
        f"recipients = {toml_list(recipients)}", "[input]", f'dataset = "{dataset}"',
        "[aggregate]", f"group_by = {toml_list(group_by)}", f'measure = "{measure}"',
        "[categories]", *(f"{c} = {toml_list(categories[c])}" for c in group_by),
        "[disclosure]", f"min_cell = {min_cell}", f"min_contributors = {min_contributors}",
        f"suppress_zero = {'true' if suppress_zero else 'false'}",
    ]
    return ("\n".join(lines) + "\n").encode()


def plaintext_release(files: Mapping[str, Path], spec: UseCaseSpec,
                      rules: DisclosureRules) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """keep, released value and the raw total, computed in the clear with pandas."""
    frames = {p: pd.read_csv(files[p], dtype={c: str for c in spec.group_by})
              for p in spec.parties}
    return plaintext_release_frames(frames, spec, rules)


def plaintext_release_frames(frames: Mapping[str, pd.DataFrame], spec: UseCaseSpec,
                             rules: DisclosureRules
                             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The same from each party's rows as a DataFrame."""
    index = pd.MultiIndex.from_tuples(spec.category_rows(), names=list(spec.group_by))
    total = pd.Series(0, index=index, dtype="int64")
    contributors = pd.Series(0, index=index, dtype="int64")
    for party in spec.parties:
        df = frames[party]
        groups = df.groupby(list(spec.group_by))
        kind, column = spec.measure.kind, spec.measure.column
        if kind == "count":
            measure = groups.size()
        elif kind == "count_distinct":
            measure = groups[column].nunique()
        else:
            measure = groups[column].sum()
        total = total.add(measure.reindex(index, fill_value=0), fill_value=0).astype("int64")
        contributors += (groups.size().reindex(index, fill_value=0) > 0).astype("int64")
    keep = np.array([rules.keeps(int(v), int(c)) for v, c in zip(total, contributors,
                                                               strict=True)])
    return keep, np.where(keep, total.to_numpy(), 0), total.to_numpy()


def treatments_from_omop(folder: Path) -> pd.DataFrame:
    """The treatments view, rebuilt in pandas: one row per patient, product and line."""
    read = lambda t: pd.read_csv(folder / f"{t}.csv")  # noqa: E731
    exposures = read("drug_exposure")
    for column in ("drug_exposure_start_date", "drug_exposure_end_date"):
        exposures[column] = pd.to_datetime(exposures[column])
    if (folder / "episode.csv").exists():
        episodes = read("episode")
        merged = exposures.merge(episodes, on="person_id")
        within = (merged.drug_exposure_start_date >= pd.to_datetime(merged.episode_start_date)) \
            & (merged.drug_exposure_start_date <= pd.to_datetime(merged.episode_end_date))
        lines = merged[within][["drug_exposure_id", "episode_number"]].rename(
            columns={"episode_number": "line"})
    else:
        derived = derive_lines(exposures.rename(columns={
            "drug_source_value": "drug", "drug_exposure_start_date": "start_date",
            "drug_exposure_end_date": "end_date"}))
        lines = derived[["drug_exposure_id", "line"]]
    conditions = read("condition_occurrence").sort_values("condition_start_date") \
        .drop_duplicates("person_id")[["person_id", "condition_source_value"]]
    rows = exposures.merge(lines, on="drug_exposure_id") \
        .merge(read("person")[["person_id", "person_source_value"]], on="person_id") \
        .merge(conditions, on="person_id", how="left")
    rows["line"] = rows["line"].map(line_label)
    return rows.rename(columns={"person_source_value": "pseudonym",
                                "drug_source_value": "product",
                                "condition_source_value": "indication"}) \
        .drop_duplicates(["pseudonym", "product", "indication", "line"])


# ---- distribution jobs: episodes and the plaintext quantiles and Kaplan-Meier curve ------

EPISODE_CATEGORIES = {"product": DEMO_CATEGORIES["product"], "line": DEMO_CATEGORIES["line"]}
# Median days on treatment per product (exponential); later lines are shorter.
_MEDIAN_DAYS = {"osimertinib": 540, "durvalumab": 300, "olaparib": 420}


def write_episodes(folder: Path, parties: Sequence[str], seed: int,
                   sizes: Sequence[int] = (260, 150, 90, 60, 40)) -> dict[str, Path]:
    """folder/<party>/episodes.csv: pseudonym, product, line, duration_days, censored.
    Olaparib in line 3+ is empty everywhere; durvalumab in line 3+ is all censored; some
    persons have several episodes (for contribution bounds)."""
    rng = np.random.default_rng(seed)
    files = {}
    for index, party in enumerate(parties):
        n = sizes[index % len(sizes)]
        product = rng.choice(list(_MEDIAN_DAYS), n, p=[0.45, 0.35, 0.2])
        line = rng.choice(["1", "2", "3+"], n, p=[0.6, 0.3, 0.1])
        line = np.where((product == "olaparib") & (line == "3+"), "2", line)
        median = np.array([_MEDIAN_DAYS[p] for p in product]) / np.where(line == "1", 1, 2)
        days = np.floor(rng.exponential(median / np.log(2))).astype(int)
        censored = rng.random(n) < 0.3
        censored |= (product == "durvalumab") & (line == "3+")
        persons = rng.integers(0, int(n * 0.7), n)  # about one in three persons repeats
        frame = pd.DataFrame({"pseudonym": [f"{party}-{p}" for p in persons],
                              "product": product, "line": line, "duration_days": days,
                              "censored": np.where(censored, "true", "false")})
        (folder / party).mkdir(parents=True, exist_ok=True)
        files[party] = folder / party / "episodes.csv"
        frame.to_csv(files[party], index=False)
    return files


def read_episodes(path: Path) -> pd.DataFrame:
    frame = pd.read_csv(path, dtype={"line": str, "censored": str})
    return frame.assign(censored=frame.censored == "true")


def bin_of(days: int, edges: Sequence[int]) -> int:
    """The bin of a value: [e_k, e_{k+1}); below e_0 counts in the first."""
    return max(0, int(np.searchsorted(edges, days, side="right")) - 1)


def plaintext_distribution(rows: Sequence[tuple[int, int, bool]], groups: int,
                           edges: Sequence[int], quantiles: Sequence[float],
                           rules: DisclosureRules, censored: bool,
                           contributors: Sequence[int] | None = None) -> list[dict]:
    """Per group, from (group, days, censored) rows: n, the curve at e_1..e_m as exact
    fractions (Kaplan-Meier on the times coarsened to their bin, events before censorings;
    without censoring, the share at or beyond each edge), the (bin, days) of each quantile,
    and what the rules release. `contributors`: parties with rows, per group."""
    from fractions import Fraction

    m = len(edges) - 1
    out = []
    for g in range(groups):
        mine = [(bin_of(t, edges), c and censored) for gg, t, c in rows if gg == g]
        n = len(mine)
        at_risk = [sum(1 for b, _ in mine if b >= k) for k in range(m + 1)]
        curve, s = [], Fraction(1)
        for k in range(m):
            d = sum(1 for b, c in mine if b == k and not c)
            if at_risk[k]:
                s *= 1 - Fraction(d, at_risk[k])
            curve.append(s)
        found = []
        for q in quantiles:
            left = 1 - Fraction(round(q * 10_000), 10_000)
            b = next((k for k in range(m) if curve[k] <= left), m)
            if b == m:
                days = edges[m]
            else:
                before = Fraction(1) if b == 0 else curve[b - 1]
                exact = (edges[b + 1] - edges[b]) * (before - left) / (before - curve[b])
                days = edges[b] + int(exact + Fraction(1, 2))  # to the nearest day, halves up
            found.append((b, days))
        big = n >= rules.min_cell and (contributors is None or
                                       contributors[g] >= rules.min_contributors)
        shown = [True]  # e_0; then the at-risk rule and the step rule
        for k in range(1, m + 1):
            d = sum(1 for b, c in mine if b == k - 1 and not c)
            shown.append(at_risk[k] >= rules.min_cell and
                         (d >= rules.min_cell or (d == 0 and shown[k - 1])))
        bracket = [shown[b] and shown[b + 1] for b in range(m)] + [shown[m]]
        out.append({"n": n, "keep_n": big or (n == 0 and not rules.suppress_zero),
                    "curve": curve, "at_risk": at_risk,
                    "keep_curve": [big and shown[k] for k in range(1, m + 1)],
                    "quantiles": found,
                    "keep_q": [big and bracket[b] for b, _ in found]})
    return out
