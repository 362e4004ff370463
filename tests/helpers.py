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
