"""A hospital's OMOP CDM tables as the `treatments` dataset, inside DuckDB.

One row per person, product and treatment line, with the person's pseudonym and
indication:

    treatments(pseudonym, product, indication, line, start_date, administrations)

- product: drug_exposure.drug_source_value (the product name);
- indication: the person's earliest condition_occurrence.condition_source_value;
- line: the episode (episode_number) whose dates cover the exposure's start, where the
  hospital records episodes; otherwise derived from drug_exposure by the documented rule
  (connectors/lines.py), the one step that runs in Python, since it is sequential per
  patient. Lines 3 and later are reported together as "3+".

The use case's GROUP BY then runs on this view in DuckDB, like any file dataset.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from mpc.connectors.lines import derive_lines

REQUIRED = ("person", "condition_occurrence", "drug_exposure")
VIEW = "treatments"
COLUMNS = ("pseudonym", "product", "indication", "line", "start_date", "administrations")

Run = Callable[[str], list[tuple[Any, ...]]]


def table_file(folder: Path, table: str) -> Path | None:
    for suffix in (".parquet", ".csv"):
        path = folder / f"{table}{suffix}"
        if path.exists():
            return path
    return None


def register_treatments(con: Any, folder: Path, run: Run,
                        fail: Callable[[str], Exception]) -> str:
    """Create the `treatments` view over the OMOP tables in `folder`; return its name."""
    if not folder.is_dir():
        raise fail(f"OMOP folder not found: {folder.name}")
    for table in (*REQUIRED, "episode"):
        path = table_file(folder, table)
        if path is None:
            if table in REQUIRED:
                raise fail(f"OMOP table {table} is missing ({table}.csv or {table}.parquet)")
            continue
        quoted = "'" + str(path).replace("'", "''") + "'"
        reader = (f"read_parquet({quoted})" if path.suffix == ".parquet"
                  else f"read_csv_auto({quoted}, header=true, sample_size=-1)")
        run(f"CREATE VIEW {table} AS SELECT * FROM {reader}")
    if table_file(folder, "episode") is not None:
        run("""CREATE VIEW exposure_lines AS
               SELECT de.drug_exposure_id, ep.episode_number AS line
               FROM drug_exposure de JOIN episode ep
                 ON ep.person_id = de.person_id
                AND de.drug_exposure_start_date BETWEEN ep.episode_start_date
                                                    AND ep.episode_end_date""")
    else:
        exposures = con.execute(
            """SELECT drug_exposure_id, person_id, drug_source_value AS drug,
                      drug_exposure_start_date AS start_date,
                      drug_exposure_end_date AS end_date
               FROM drug_exposure""").df()
        try:
            derived = derive_lines(exposures)[["drug_exposure_id", "line"]]
        except ValueError as exc:
            raise fail(f"cannot derive treatment lines from drug_exposure: {exc}") from None
        con.register("exposure_lines", derived)
    run(f"""CREATE VIEW {VIEW} AS
            WITH indication AS (
                SELECT person_id, arg_min(condition_source_value, condition_start_date)
                       AS indication
                FROM condition_occurrence GROUP BY person_id)
            SELECT p.person_source_value AS pseudonym,
                   de.drug_source_value AS product,
                   i.indication,
                   CASE WHEN l.line >= 3 THEN '3+' ELSE CAST(l.line AS VARCHAR) END AS line,
                   MIN(de.drug_exposure_start_date) AS start_date,
                   COUNT(*) AS administrations
            FROM drug_exposure de
            JOIN exposure_lines l USING (drug_exposure_id)
            JOIN person p USING (person_id)
            LEFT JOIN indication i USING (person_id)
            GROUP BY ALL""")
    return VIEW
