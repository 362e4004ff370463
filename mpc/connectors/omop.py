"""A hospital's OMOP CDM tables as the `treatments` or `treatment_episodes` dataset, inside
DuckDB.

The folder holds person, condition_occurrence and drug_exposure, and optionally episode and
observation_period (each as <table>.csv or <table>.parquet). Both views have one row per
person, product and treatment line:

    treatments(pseudonym, product, indication, line, start_date, administrations)
    treatment_episodes(pseudonym, product, indication, line, start_date, end_date,
                       duration_days, censored, time_to_next_treatment_days,
                       next_treatment_censored)

Common to both:

- pseudonym: person.person_source_value; product: drug_exposure.drug_source_value (the
  product name); indication: the person's earliest condition_occurrence's
  condition_source_value;
- line: the episode (episode_number) whose dates cover the exposure's start, where the
  hospital records episodes (an exposure no episode covers is left out); otherwise derived
  from drug_exposure by the documented rule (connectors/lines.py), the one step that runs in
  Python, since it is sequential per patient. Lines 3 and later are reported together as
  "3+". In `treatments` a person's lines 3, 4, ... of one product make one "3+" row; in
  `treatment_episodes` each line is its own episode, so such a person has several "3+" rows
  of that product, one per line.

`treatment_episodes`, for a person's product in line n (dates are DATE, day counts BIGINT,
the two flags BOOLEAN). An exposure's *end* is its drug_exposure_end_date; a missing end, or
one before the start, counts as the start (as in lines.py):

- start_date: the earliest drug_exposure_start_date of that product in line n;
- end_date: the latest end of that product's exposures in line n;
- duration_days = end_date - start_date + 1 (days on therapy, both days counted: a single
  administration is 1 day);
- the *next line* is the person's line with the next higher number (among the lines that
  have exposures in the view); a line's *first day* is the earliest start of any product
  in it;
- the person's *last observation*: the latest observation_period_end_date of the person
  when the folder has an observation_period table and the person has a row in it;
  otherwise the *data cut-off*, the latest drug_exposure start or end date in the whole
  drug_exposure table. Never earlier than the person's own latest drug_exposure_start_date
  (an administration proves the person was observed; this only matters for inconsistent
  data);
- censored: the person has no next line and the last observation is at most GAP_DAYS (90)
  days after end_date (or before it): the treatment may still have been going on. Else
  false (the episode ended: a next line followed, or more than 90 days without it passed);
- time_to_next_treatment_days: from line n's first day to the next line's first day, and
  next_treatment_censored false; without a next line, from line n's first day to the last
  observation, and next_treatment_censored true. Every product of line n has the same
  values.

The use case's GROUP BY (or the job kind's query) then runs on the view in DuckDB, like any
file dataset.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from mpc.config.party import OMOP_VIEWS
from mpc.connectors.lines import GAP_DAYS, derive_lines

REQUIRED = ("person", "condition_occurrence", "drug_exposure")
OPTIONAL = ("episode", "observation_period")
VIEW = "treatments"
COLUMNS = ("pseudonym", "product", "indication", "line", "start_date", "administrations")
EPISODES_VIEW = "treatment_episodes"
EPISODE_COLUMNS = ("pseudonym", "product", "indication", "line", "start_date", "end_date",
                   "duration_days", "censored", "time_to_next_treatment_days",
                   "next_treatment_censored")

Run = Callable[[str], list[tuple[Any, ...]]]

_INDICATION = """indication AS (
                SELECT person_id, arg_min(condition_source_value, condition_start_date)
                       AS indication
                FROM condition_occurrence GROUP BY person_id)"""
_LINE_LABEL = "CASE WHEN {n} >= 3 THEN '3+' ELSE CAST({n} AS VARCHAR) END"


def table_file(folder: Path, table: str) -> Path | None:
    for suffix in (".parquet", ".csv"):
        path = folder / f"{table}{suffix}"
        if path.exists():
            return path
    return None


def register_treatments(con: Any, folder: Path, run: Run,
                        fail: Callable[[str], Exception]) -> str:
    """Create the `treatments` view over the OMOP tables in `folder`; return its name."""
    return register_omop(con, folder, run, fail, VIEW)


def register_omop(con: Any, folder: Path, run: Run, fail: Callable[[str], Exception],
                  view: str = VIEW) -> str:
    """Create `view` (one of OMOP_VIEWS) over the OMOP tables in `folder`; return its name."""
    if view not in OMOP_VIEWS:
        raise ValueError(f"unknown OMOP view {view!r}")
    present = _register_tables(folder, run, fail)
    _register_lines(con, run, fail, "episode" in present)
    if view == VIEW:
        run(_treatments_sql())
    else:
        run(_episodes_sql("observation_period" in present))
    return view


def _register_tables(folder: Path, run: Run, fail: Callable[[str], Exception]) -> set[str]:
    """A view per table found in `folder`; the names of the optional tables present."""
    if not folder.is_dir():
        raise fail(f"OMOP folder not found: {folder.name}")
    present = set()
    for table in (*REQUIRED, *OPTIONAL):
        path = table_file(folder, table)
        if path is None:
            if table in REQUIRED:
                raise fail(f"OMOP table {table} is missing ({table}.csv or {table}.parquet)")
            continue
        quoted = "'" + str(path).replace("'", "''") + "'"
        reader = (f"read_parquet({quoted})" if path.suffix == ".parquet"
                  else f"read_csv_auto({quoted}, header=true, sample_size=-1)")
        run(f"CREATE VIEW {table} AS SELECT * FROM {reader}")
        present.add(table)
    return present & set(OPTIONAL)


def _register_lines(con: Any, run: Run, fail: Callable[[str], Exception],
                    episodes: bool) -> None:
    """`exposure_lines(drug_exposure_id, line)`: each exposure's line number."""
    if episodes:
        run("""CREATE VIEW exposure_lines AS
               SELECT de.drug_exposure_id, ep.episode_number AS line
               FROM drug_exposure de JOIN episode ep
                 ON ep.person_id = de.person_id
                AND de.drug_exposure_start_date BETWEEN ep.episode_start_date
                                                    AND ep.episode_end_date""")
        return
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


def _treatments_sql() -> str:
    return f"""CREATE VIEW {VIEW} AS
            WITH {_INDICATION}
            SELECT p.person_source_value AS pseudonym,
                   de.drug_source_value AS product,
                   i.indication,
                   {_LINE_LABEL.format(n="l.line")} AS line,
                   MIN(de.drug_exposure_start_date) AS start_date,
                   COUNT(*) AS administrations
            FROM drug_exposure de
            JOIN exposure_lines l USING (drug_exposure_id)
            JOIN person p USING (person_id)
            LEFT JOIN indication i USING (person_id)
            GROUP BY ALL"""


def _episodes_sql(observation_period: bool) -> str:
    # The latest observation_period_end_date per person, or no rows without the table.
    observed = ("""SELECT person_id, MAX(CAST(observation_period_end_date AS DATE)) AS day
                   FROM observation_period GROUP BY person_id""" if observation_period
                else "SELECT person_id, CAST(NULL AS DATE) AS day FROM person WHERE false")
    return f"""CREATE VIEW {EPISODES_VIEW} AS
            WITH {_INDICATION},
            exposure_days AS (
                SELECT drug_exposure_id, person_id, drug_source_value AS product,
                       CAST(drug_exposure_start_date AS DATE) AS start_day,
                       greatest(CAST(drug_exposure_start_date AS DATE),
                                coalesce(CAST(drug_exposure_end_date AS DATE),
                                         CAST(drug_exposure_start_date AS DATE))) AS end_day
                FROM drug_exposure),
            lined AS (
                SELECT e.*, l.line AS line_number
                FROM exposure_days e JOIN exposure_lines l USING (drug_exposure_id)),
            per_product AS (
                SELECT person_id, product, line_number, MIN(start_day) AS start_date,
                       MAX(end_day) AS end_date
                FROM lined GROUP BY person_id, product, line_number),
            line_days AS (
                SELECT person_id, line_number, MIN(start_day) AS first_day
                FROM lined GROUP BY person_id, line_number),
            line_next AS (
                SELECT person_id, line_number, first_day,
                       LEAD(first_day) OVER (PARTITION BY person_id ORDER BY line_number)
                       AS next_day
                FROM line_days),
            cutoff AS (SELECT MAX(end_day) AS day FROM exposure_days),
            observed AS ({observed}),
            last_seen AS (
                SELECT s.person_id, greatest(coalesce(o.day, c.day), s.day) AS day
                FROM (SELECT person_id, MAX(start_day) AS day FROM exposure_days
                      GROUP BY person_id) s
                CROSS JOIN cutoff c
                LEFT JOIN observed o USING (person_id))
            SELECT p.person_source_value AS pseudonym,
                   e.product,
                   i.indication,
                   {_LINE_LABEL.format(n="e.line_number")} AS line,
                   e.start_date,
                   e.end_date,
                   date_diff('day', e.start_date, e.end_date) + 1 AS duration_days,
                   (n.next_day IS NULL
                    AND date_diff('day', e.end_date, s.day) <= {int(GAP_DAYS)}) AS censored,
                   date_diff('day', n.first_day, coalesce(n.next_day, s.day))
                       AS time_to_next_treatment_days,
                   n.next_day IS NULL AS next_treatment_censored
            FROM per_product e
            JOIN line_next n USING (person_id, line_number)
            JOIN last_seen s USING (person_id)
            JOIN person p USING (person_id)
            LEFT JOIN indication i USING (person_id)"""
