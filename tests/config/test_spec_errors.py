"""Every way `parse_spec` refuses a use case spec, one case each, plus what it makes of good
ones. Each bad spec is a valid base spec of its kind with one thing changed; each case
checks the field the error names and what it says. Only `parse_spec`, `ConfigError` and
the parsed spec's public attributes are used, so the cases hold whatever module the
parser lives in."""

from __future__ import annotations

import hashlib

import pytest

from mpc.config.spec import parse_spec
from mpc.errors import ConfigError

SOURCE = "usecases/x.toml"

AGGREGATE_HEAD = """\
name = "product-use"
kind = "aggregate"
parties = ["hospital_a", "hospital_b", "hospital_c"]
recipients = ["coordinator"]
"""
INPUT = """
[input]
dataset = "treatments"
"""
AGGREGATE_TABLE = """
[aggregate]
group_by = ["product", "line"]
measure = "count"
"""
AGGREGATE_CATEGORIES = """
[categories]
product = ["osimertinib", "durvalumab", "olaparib"]
line = ["1", "2", "3+"]
"""
DISCLOSURE = """
[disclosure]
min_cell = 10
"""
AGGREGATE = AGGREGATE_HEAD + INPUT + AGGREGATE_TABLE + AGGREGATE_CATEGORIES + DISCLOSURE

LINKAGE_HEAD = """\
name = "hospital-insurer-linkage"
kind = "linkage"
parties = ["hospital_a", "insurer_a"]
"""
LINKAGE_TABLE = """
[linkage]
key = "pseudonym"
pad_to = 10000
"""
LEFT = """
[linkage.left]
party = "hospital_a"
dataset = "treatments"
by = ["indication", "line"]
"""
REDUCE = """
[linkage.left.reduce]
order_by = "start_date"
keep = "first"
"""
RIGHT = """
[linkage.right]
party = "insurer_a"
dataset = "claims"
by = ["product"]
"""
LINKAGE_CATEGORIES = """
[categories]
indication = ["NSCLC", "SCLC", "breast", "ovarian", "prostate"]
line = ["1", "2", "3+"]
product = ["osimertinib", "durvalumab", "olaparib"]
"""
LINKAGE = (LINKAGE_HEAD + LINKAGE_TABLE + LEFT + REDUCE + RIGHT + LINKAGE_CATEGORIES
           + DISCLOSURE)

OVERLAP_HEAD = """\
name = "patients-across-hospitals"
kind = "overlap"
parties = ["hospital_a", "hospital_b", "hospital_c"]
"""
OVERLAP_TABLE = """
[overlap]
key = "pseudonym"
pad_to = 10000
"""
OVERLAP = OVERLAP_HEAD + INPUT + OVERLAP_TABLE + DISCLOSURE

DISTRIBUTION_HEAD = """\
name = "treatment-duration"
kind = "distribution"
parties = ["hospital_a", "hospital_b", "hospital_c"]
"""
DISTRIBUTION_TABLE = """
[distribution]
group_by = ["product", "line"]
measure = "duration_days"
censor = "censored"
bins = [0, 30, 90, 180]
quantiles = [0.25, 0.5, 0.75]
"""
DISTRIBUTION = (DISTRIBUTION_HEAD + INPUT + DISTRIBUTION_TABLE + AGGREGATE_CATEGORIES
                + DISCLOSURE)

BASES = {"aggregate": AGGREGATE, "linkage": LINKAGE, "overlap": OVERLAP,
         "distribution": DISTRIBUTION}

# Lines to hang an extra field on, in each base.
DATASET_LINE = 'dataset = "treatments"\n'  # [input] (aggregate, overlap)
TOP = 'kind = "aggregate"\n'  # the aggregate base's top level
LINKAGE_TOP = 'kind = "linkage"\n'
WINDOW = 'window = { column = "start_date", from = 2024-01-01, to = 2024-07-01 }'
LAPLACE = 'noise = { mechanism = "discrete_laplace", epsilon = 1.0 }'


def edited(base: str, *edits: tuple[str, str]) -> bytes:
    """`base` with each `old` (which must occur exactly once) replaced by `new`."""
    for old, new in edits:
        assert base.count(old) == 1, f"the base spec holds {old!r} {base.count(old)} times"
        base = base.replace(old, new)
    return base.encode()


def after(line: str, extra: str) -> tuple[str, str]:
    """An edit that adds `extra` on the line after `line`."""
    return line, line + extra + "\n"


def in_input(extra: str) -> tuple[str, str]:
    return after(DATASET_LINE, extra)


def in_disclosure(extra: str) -> tuple[str, str]:
    return after("min_cell = 10\n", extra)


def noise(fields: str) -> tuple[str, str]:
    return in_disclosure(f"noise = {{ {fields} }}")


def window(fields: str) -> tuple[str, str]:
    return in_input(f"window = {{ {fields} }}")


def at_end(text: str) -> tuple[str, str]:
    """An edit that adds tables after the last one ([disclosure], in every base)."""
    return DISCLOSURE, DISCLOSURE + text


def case(kind: str, edits: list[tuple[str, str]], field: str, fragment: str,
         name: str) -> object:
    return pytest.param(kind, edits, field, fragment, id=f"{kind}-{name}")


AGG, LNK, OVL, DST = "aggregate", "linkage", "overlap", "distribution"

CASES = [
    # ---- top level: name, kind, parties, recipients, unknown and retired fields ----
    case(AGG, [('name = "product-use"\n', "")], "name", "required field is missing",
         "name-missing"),
    case(AGG, [('name = "product-use"', "name = 7")], "name", "expected a string, got int",
         "name-not-a-string"),
    case(AGG, [('name = "product-use"', 'name = "  "')], "name", "must not be empty",
         "name-blank"),
    case(AGG, [(TOP, "")], "kind", "required field is missing", "kind-missing"),
    case(AGG, [(TOP, 'kind = "magic"\n')], "kind",
         "unknown kind 'magic' (expected aggregate, linkage, overlap, distribution)",
         "kind-unknown"),
    case(AGG, [(TOP, 'kind = "Aggregate"\n')], "kind", "unknown kind 'Aggregate'",
         "kind-is-case-sensitive"),
    case(AGG, [(TOP, "kind = 1\n")], "kind", "expected a string, got int", "kind-not-a-string"),
    case(AGG, [('parties = ["hospital_a", "hospital_b", "hospital_c"]\n', "")], "parties",
         "required field is missing", "parties-missing"),
    case(AGG, [('["hospital_a", "hospital_b", "hospital_c"]', '"hospital_a"')], "parties",
         "expected a list, got str", "parties-not-a-list"),
    case(AGG, [('["hospital_a", "hospital_b", "hospital_c"]', '["hospital_a", ""]')], "parties",
         "expected non-empty strings, got ''", "parties-empty-name"),
    case(AGG, [('["hospital_a", "hospital_b", "hospital_c"]', '["hospital_a", 3]')], "parties",
         "expected non-empty strings, got 3", "parties-not-strings"),
    case(AGG, [('["hospital_a", "hospital_b", "hospital_c"]', "[]")], "parties",
         "must not be empty", "parties-empty"),
    case(AGG, [('"hospital_b", "hospital_c"]', '"hospital_b", "hospital_a"]')], "parties",
         "duplicate entries: hospital_a", "parties-duplicate"),
    case(AGG, [('"hospital_c"]', '"Hospital C"]')], "parties", "malformed name 'Hospital C'",
         "parties-malformed-name"),
    case(AGG, [('"hospital_c"]', '"../hospital_c"]')], "parties", "malformed name '../hospital_c'",
         "parties-path-in-name"),
    case(AGG, [('["hospital_a", "hospital_b", "hospital_c"]', '["hospital_a"]')], "parties",
         "a joint computation needs at least two parties", "parties-only-one"),
    case(AGG, [('"hospital_c"]', '"coordinator"]')], "parties",
         "'coordinator' is a role, not a data party", "parties-coordinator"),
    case(AGG, [('recipients = ["coordinator"]', 'recipients = ["insurer_a"]')], "recipients",
         "'insurer_a' is neither 'coordinator' nor a party of the job", "recipients-stranger"),
    case(AGG, [('recipients = ["coordinator"]', "recipients = []")], "recipients",
         "must not be empty", "recipients-empty"),
    case(AGG, [('recipients = ["coordinator"]', 'recipients = "coordinator"')], "recipients",
         "expected a list, got str", "recipients-not-a-list"),
    case(AGG, [('recipients = ["coordinator"]', 'recipients = ["coordinator", "coordinator"]')],
         "recipients", "duplicate entries: coordinator", "recipients-duplicate"),
    case(AGG, [after(TOP, 'colour = "blue"')], "colour", "unknown field (misspelt?)",
         "unknown-field"),
    case(AGG, [after(TOP, 'colour = "blue"\nbanana = 1')], "banana", "unknown field",
         "unknown-fields-first-in-order"),
    case(AGG, [after(TOP, 'family = "oncology"')], "family",
         "no longer a spec field: the release ledger compares every release on a dataset",
         "family"),
    case(LNK, [after(LINKAGE_TOP, 'family = "oncology"')], "family", "no longer a spec field",
         "family"),
    case(OVL, [after('kind = "overlap"\n', 'family = "oncology"')], "family",
         "no longer a spec field", "family"),
    # ---- [input] ----
    case(AGG, [(INPUT, "")], "input", "required field is missing", "input-missing"),
    case(OVL, [(INPUT, "")], "input", "required field is missing", "input-missing"),
    case(AGG, [(INPUT, ""), after(TOP, 'input = "treatments"')], "input",
         "expected a table, got str", "input-not-a-table"),
    case(AGG, [(DATASET_LINE, "")], "input.dataset", "required field is missing",
         "dataset-missing"),
    case(OVL, [(DATASET_LINE, 'dataset = ""\n')], "input.dataset", "must not be empty",
         "dataset-empty"),
    case(AGG, [in_input('datset = "treatments"')], "input.datset", "unknown field (misspelt?)",
         "input-unknown-field"),
    case(LNK, [at_end('[input]\ndataset = "treatments"\n')],
         "input", "unknown field (misspelt?)", "input-is-not-a-linkage-field"),
    # ---- [input] window ----
    case(AGG, [in_input('window = "2024"')], "input.window", "expected a table, got str",
         "window-not-a-table"),
    case(AGG, [window("from = 2024-01-01, to = 2024-07-01")], "input.window.column",
         "required field is missing", "window-column-missing"),
    case(AGG, [window('column = "", from = 2024-01-01, to = 2024-07-01')],
         "input.window.column", "must not be empty", "window-column-empty"),
    case(AGG, [window('column = "start_date", to = 2024-07-01')], "input.window.from",
         "required field is missing", "window-from-missing"),
    case(OVL, [window('column = "start_date", from = 2024-01-01')], "input.window.to",
         "required field is missing", "window-to-missing"),
    case(AGG, [window('column = "start_date", from = "2024-13-01", to = 2024-07-01')],
         "input.window.from", "expected a date like 2024-01-01, got '2024-13-01'",
         "window-bad-date"),
    case(AGG, [window('column = "start_date", from = 20240101, to = 2024-07-01')],
         "input.window.from", "expected a date like 2024-01-01, got 20240101",
         "window-date-as-number"),
    case(AGG, [window('column = "start_date", from = 2024-01-01T08:00:00, to = 2024-07-01')],
         "input.window.from", "expected a date like 2024-01-01, got datetime",
         "window-datetime-is-not-a-date"),
    case(AGG, [window('column = "start_date", from = 2024-01-01, to = "1 July"')],
         "input.window.to", "expected a date like 2024-01-01, got '1 July'",
         "window-bad-end-date"),
    case(AGG, [window('column = "start_date", from = 2024-01-01, to = 2023-12-31')],
         "input.window.to", "the window ends (2023-12-31) before it starts (2024-01-01)",
         "window-ends-before-it-starts"),
    case(OVL, [window('column = "start_date", from = "2024-01-01", to = 2024-01-01')],
         "input.window.to", "the window ends (2024-01-01) before it starts (2024-01-01)",
         "window-empty"),
    case(AGG, [window('column = "start_date", from = 2024-01-01, to = 2024-07-01, until = 1')],
         "input.window.until", "unknown field (misspelt?)", "window-unknown-field"),
    # ---- [input] filter ----
    case(AGG, [in_input('filter = "NSCLC"')], "input.filter", "expected a table, got str",
         "filter-not-a-table"),
    case(AGG, [in_input("filter = {}")], "input.filter",
         "an empty filter keeps nothing: leave it out", "filter-empty"),
    case(AGG, [in_input('filter = { indication = "NSCLC" }')], "input.filter.indication",
         "expected a list, got str", "filter-values-not-a-list"),
    case(AGG, [in_input("filter = { indication = [] }")], "input.filter.indication",
         "must not be empty", "filter-no-values"),
    case(AGG, [in_input('filter = { indication = ["NSCLC", "NSCLC"] }')],
         "input.filter.indication", "duplicate entries: NSCLC", "filter-duplicate-values"),
    case(AGG, [in_input('filter = { line = ["1"] }')], "input",
         "filter: 'line' is a group_by column: list fewer categories instead of filtering it",
         "filter-on-group-by-column"),
    case(OVL, [in_input('filter = { parties_seen = ["1"] }')], "input",
         "filter: 'parties_seen' is a group_by column", "filter-on-parties-seen"),
    # ---- [aggregate] ----
    case(AGG, [(AGGREGATE_TABLE, "")], "aggregate", "required field is missing",
         "aggregate-missing"),
    case(AGG, [('group_by = ["product", "line"]\n', "")], "aggregate.group_by",
         "required field is missing", "group-by-missing"),
    case(AGG, [('group_by = ["product", "line"]', "group_by = []")], "aggregate.group_by",
         "must not be empty", "group-by-empty"),
    case(AGG, [('group_by = ["product", "line"]', 'group_by = "product"')],
         "aggregate.group_by", "expected a list, got str", "group-by-not-a-list"),
    case(AGG, [('group_by = ["product", "line"]', 'group_by = ["product", "line", "line"]')],
         "aggregate.group_by", "duplicate entries: line", "group-by-duplicate"),
    case(AGG, [('measure = "count"', 'measure = "median:cycles"')], "aggregate.measure",
         "expected 'count', 'count_distinct:<column>' or 'sum:<column>', got 'median:cycles'",
         "measure-unknown"),
    case(AGG, [('measure = "count"', 'measure = "count:pseudonym"')], "aggregate.measure",
         "got 'count:pseudonym'", "measure-count-with-column"),
    case(AGG, [('measure = "count"', 'measure = "sum"')], "aggregate.measure", "got 'sum'",
         "measure-sum-without-column"),
    case(AGG, [('measure = "count"', 'measure = "count_distinct:"')], "aggregate.measure",
         "got 'count_distinct:'", "measure-distinct-without-column"),
    case(AGG, [('measure = "count"', "measure = 3")], "aggregate.measure",
         "expected a string, got int", "measure-not-a-string"),
    case(AGG, [('measure = "count"', 'measure = ""')], "aggregate.measure", "must not be empty",
         "measure-empty"),
    case(AGG, [('measure = "count"', 'measure = "count_distinct:line"')], "aggregate.measure",
         "column 'line' is also a group_by column", "measure-on-group-by-column"),
    case(AGG, [('measure = "count"', 'measure = "sum:product"')], "aggregate.measure",
         "column 'product' is also a group_by column", "sum-of-group-by-column"),
    case(AGG, [after('measure = "count"\n', 'measures = "sum:cycles"')], "aggregate.measures",
         "unknown field (misspelt?)", "aggregate-unknown-field"),
    case(OVL, [after(OVERLAP_TABLE, '[aggregate]\ngroup_by = ["product"]')], "aggregate",
         "unknown field (misspelt?)", "aggregate-is-not-an-overlap-field"),
    case(LNK, [at_end('[aggregate]\ngroup_by = ["product"]\n')],
         "aggregate", "unknown field (misspelt?)", "aggregate-is-not-a-linkage-field"),
    # ---- [categories] ----
    case(AGG, [(AGGREGATE_CATEGORIES, "")], "categories", "required field is missing",
         "categories-missing"),
    case(LNK, [(LINKAGE_CATEGORIES, "")], "categories", "required field is missing",
         "categories-missing"),
    case(AGG, [('line = ["1", "2", "3+"]\n', "")], "categories.line",
         "every group_by column needs its list of categories", "categories-of-one-missing"),
    case(LNK, [('product = ["osimertinib", "durvalumab", "olaparib"]\n', "")],
         "categories.product", "every group_by column needs its list of categories",
         "categories-of-right-side-missing"),
    case(AGG, [after('line = ["1", "2", "3+"]\n', 'indication = ["NSCLC"]')],
         "categories.indication", "not a group_by column", "categories-extra"),
    case(AGG, [after('line = ["1", "2", "3+"]\n', 'stage = ["I"]\nindication = ["NSCLC"]')],
         "categories.indication", "not a group_by column", "categories-extras-first-in-order"),
    case(LNK, [after('line = ["1", "2", "3+"]\n', 'stage = ["I", "II"]')], "categories.stage",
         "not a `by` column of either side", "categories-extra"),
    case(AGG, [('line = ["1", "2", "3+"]', "line = []")], "categories.line", "must not be empty",
         "categories-empty-list"),
    case(AGG, [('line = ["1", "2", "3+"]', 'line = "1"')], "categories.line",
         "expected a list, got str", "categories-not-a-list"),
    case(AGG, [('line = ["1", "2", "3+"]', 'line = ["1", "2", "1"]')], "categories.line",
         "duplicate entries: 1", "categories-duplicate"),
    case(AGG, [('line = ["1", "2", "3+"]', 'line = [1, "1"]')], "categories.line",
         "duplicate entries: 1", "categories-number-and-text-are-the-same-category"),
    case(AGG, [('line = ["1", "2", "3+"]', 'line = ["1", true]')], "categories.line",
         "expected non-empty strings, got True", "categories-bool"),
    case(AGG, [('line = ["1", "2", "3+"]', 'line = ["1", ""]')], "categories.line",
         "expected non-empty strings, got ''", "categories-empty-string"),
    case(OVL, [after(OVERLAP_TABLE, '[categories]\nparties_seen = ["1", "2", "3"]')],
         "categories", "unknown field (misspelt?)", "categories-are-not-an-overlap-field"),
    # ---- [overlap] ----
    case(OVL, [(OVERLAP_TABLE, "")], "overlap", "required field is missing", "overlap-missing"),
    case(OVL, [('key = "pseudonym"\n', "")], "overlap.key", "required field is missing",
         "key-missing"),
    case(OVL, [('key = "pseudonym"', "key = 1")], "overlap.key", "expected a string, got int",
         "key-not-a-string"),
    case(OVL, [("pad_to = 10000\n", "")], "overlap.pad_to", "required field is missing",
         "pad-to-missing"),
    case(OVL, [("pad_to = 10000", "pad_to = 0")], "overlap.pad_to", "must be at least 1, got 0",
         "pad-to-zero"),
    case(OVL, [("pad_to = 10000", "pad_to = 10_000_001")], "overlap.pad_to",
         "at most 10,000,000", "pad-to-too-large"),
    case(OVL, [("pad_to = 10000", "pad_to = 100.5")], "overlap.pad_to",
         "expected an integer, got float", "pad-to-float"),
    case(OVL, [("pad_to = 10000", "pad_to = true")], "overlap.pad_to",
         "expected an integer, got bool", "pad-to-bool"),
    case(OVL, [after("pad_to = 10000\n", 'by = ["product"]')], "overlap.by",
         "unknown field (misspelt?)", "overlap-unknown-field"),
    # ---- [linkage] ----
    case(LNK, [(LINKAGE_TABLE + LEFT + REDUCE + RIGHT, "")], "linkage",
         "required field is missing", "linkage-missing"),
    case(LNK, [('key = "pseudonym"\n', "")], "linkage.key", "required field is missing",
         "key-missing"),
    case(LNK, [(LEFT + REDUCE, "")], "linkage.left", "required field is missing",
         "left-missing"),
    case(LNK, [(RIGHT, "")], "linkage.right", "required field is missing", "right-missing"),
    case(LNK, [(LEFT + REDUCE, ""), after("pad_to = 10000\n", 'left = "hospital_a"')],
         "linkage.left", "expected a table, got str", "left-not-a-table"),
    case(LNK, [('party = "hospital_a"\n', "")], "linkage.left.party",
         "required field is missing", "left-party-missing"),
    case(LNK, [('dataset = "claims"\n', "")], "linkage.right.dataset",
         "required field is missing", "right-dataset-missing"),
    case(LNK, [('by = ["indication", "line"]', 'by = "indication"')], "linkage.left.by",
         "expected a list, got str", "by-not-a-list"),
    case(LNK, [('by = ["indication", "line"]', 'by = ["line", "line"]')], "linkage.left.by",
         "duplicate entries: line", "by-duplicate"),
    case(LNK, [(REDUCE, ""), after('by = ["indication", "line"]\n', 'reduce = "first"')],
         "linkage.left.reduce", "expected a table, got str", "reduce-not-a-table"),
    case(LNK, [('order_by = "start_date"\n', "")], "linkage.left.reduce.order_by",
         "required field is missing", "reduce-order-by-missing"),
    case(LNK, [('keep = "first"', 'keep = "middle"')], "linkage.left.reduce.keep",
         "expected 'first' or 'last', got 'middle'", "reduce-keep"),
    case(LNK, [after('keep = "first"\n', 'order = "asc"')], "linkage.left.reduce.order",
         "unknown field (misspelt?)", "reduce-unknown-field"),
    case(LNK, [after('party = "insurer_a"\n', 'colour = "blue"')], "linkage.right.colour",
         "unknown field (misspelt?)", "side-unknown-field"),
    case(LNK, [after('by = ["indication", "line"]\n', 'filter = { line = ["1"] }')],
         "linkage.left.filter",
         "'line' is a `by` column: list fewer categories instead of filtering it",
         "left-filter-on-by-column"),
    case(LNK, [after('by = ["product"]\n', 'filter = { product = ["olaparib"] }')],
         "linkage.right.filter", "'product' is a `by` column", "right-filter-on-by-column"),
    case(LNK, [after('by = ["indication", "line"]\n', "filter = {}")], "linkage.left.filter",
         "an empty filter keeps nothing: leave it out", "side-filter-empty"),
    case(LNK, [after('by = ["product"]\n',
                   'window = { column = "claim_date", from = 2024-06-01, to = 2024-01-01 }')],
         "linkage.right.window.to", "the window ends (2024-01-01) before it starts (2024-06-01)",
         "side-window-ends-before-it-starts"),
    case(LNK, [after('by = ["product"]\n',
                   'window = { column = "claim_date", from = "2024-02-30", to = 2024-06-01 }')],
         "linkage.right.window.from", "expected a date like 2024-01-01, got '2024-02-30'",
         "side-window-bad-date"),
    case(LNK, [("pad_to = 10000\n", "")], "linkage.pad_to", "required field is missing",
         "pad-to-missing"),
    case(LNK, [("pad_to = 10000", "pad_to = 0")], "linkage.pad_to", "must be at least 1, got 0",
         "pad-to-zero"),
    case(LNK, [("pad_to = 10000", "pad_to = 10000001")], "linkage.pad_to", "at most 10,000,000",
         "pad-to-too-large"),
    case(LNK, [after("pad_to = 10000\n", 'keys = ["pseudonym"]')], "linkage.keys",
         "unknown field (misspelt?)", "linkage-unknown-field"),
    case(LNK, [('parties = ["hospital_a", "insurer_a"]', 'parties = ["insurer_a", "hospital_a"]')],
         "parties", "a linkage has two parties: the left side's, then the right's",
         "parties-in-the-wrong-order"),
    case(LNK, [('"insurer_a"]', '"insurer_a", "hospital_b"]')], "parties",
         "a linkage has two parties", "three-parties"),
    case(LNK, [('party = "insurer_a"', 'party = "hospital_b"')], "parties",
         "a linkage has two parties", "side-party-not-in-parties"),
    case(LNK, [('by = ["indication", "line"]', "by = []"), ('by = ["product"]', "by = []")],
         "linkage.left", "give `by` columns to cross on at least one side", "no-by-columns"),
    case(LNK, [('by = ["product"]', 'by = ["line"]')], "linkage.right",
         "the two sides' `by` columns must have different names", "same-by-names"),
    # ---- [disclosure] ----
    case(AGG, [(DISCLOSURE, ""), after(TOP, 'disclosure = "strict"')], "disclosure",
         "expected a table, got str", "disclosure-not-a-table"),
    case(AGG, [("min_cell = 10", "min_cell = 0")], "disclosure.min_cell",
         "must be at least 1, got 0", "min-cell-zero"),
    case(AGG, [("min_cell = 10", 'min_cell = "10"')], "disclosure.min_cell",
         "expected an integer, got str", "min-cell-text"),
    case(OVL, [("min_cell = 10", "min_cell = 10.0")], "disclosure.min_cell",
         "expected an integer, got float", "min-cell-float"),
    case(AGG, [in_disclosure("suppress_zero = 1")], "disclosure.suppress_zero",
         "expected true or false, got 1", "suppress-zero-not-a-bool"),
    case(AGG, [in_disclosure("min_contributors = 0")], "disclosure.min_contributors",
         "must be at least 1, got 0", "min-contributors-zero"),
    case(AGG, [in_disclosure("min_contributors = 4")], "disclosure.min_contributors",
         "4 exceeds the 3 parties of the job: every non-zero cell would be suppressed",
         "min-contributors-above-parties"),
    case(LNK, [in_disclosure("min_contributors = 3")], "disclosure.min_contributors",
         "3 exceeds the 2 parties of the job", "min-contributors-above-parties"),
    case(AGG, [in_disclosure("round_to = 0")], "disclosure.round_to",
         "must be at least 1, got 0", "round-to-zero"),
    case(AGG, [in_disclosure("min_cel = 5")], "disclosure.min_cel", "unknown field (misspelt?)",
         "disclosure-unknown-field"),
    case(AGG, [in_disclosure(LAPLACE + "\nmin_contributors = 2")], "disclosure.min_contributors",
         "the contributor rule looks at the raw data, so a noisy release cannot apply it",
         "noise-with-min-contributors"),
    case(LNK, [in_disclosure("min_contributors = 2")], "disclosure.min_contributors",
         "linkage jobs take min_cell, suppress_zero and round_to only",
         "min-contributors-refused"),
    case(OVL, [in_disclosure("min_contributors = 2")], "disclosure.min_contributors",
         "overlap jobs take min_cell, suppress_zero and round_to only",
         "min-contributors-refused"),
    case(LNK, [in_disclosure(LAPLACE)], "disclosure.noise",
         "linkage jobs take min_cell, suppress_zero and round_to only", "noise-refused"),
    case(OVL, [in_disclosure(LAPLACE)], "disclosure.noise",
         "overlap jobs take min_cell, suppress_zero and round_to only", "noise-refused"),
    # ---- [disclosure] noise ----
    case(AGG, [in_disclosure('noise = "laplace"')], "disclosure.noise",
         "expected a table, got str", "noise-not-a-table"),
    case(AGG, [noise("epsilon = 1.0")], "disclosure.noise.mechanism", "required field is missing",
         "mechanism-missing"),
    case(AGG, [noise('mechanism = "laplace", epsilon = 1.0')], "disclosure.noise.mechanism",
         "expected one of discrete_laplace, discrete_gaussian", "mechanism-unknown"),
    case(AGG, [noise('mechanism = "discrete_laplace", epsilon = 1.0, sensitivity = 5')],
         "disclosure.noise.sensitivity",
         "not a spec field: each party derives it from its contribution bounds",
         "sensitivity-refused"),
    case(AGG, [noise('mechanism = "discrete_laplace"')], "disclosure.noise.epsilon",
         "required field is missing", "epsilon-missing"),
    case(AGG, [noise('mechanism = "discrete_laplace", epsilon = "1"')],
         "disclosure.noise.epsilon", "expected a number, got str", "epsilon-text"),
    case(AGG, [noise('mechanism = "discrete_laplace", epsilon = true')],
         "disclosure.noise.epsilon", "expected a number, got bool", "epsilon-bool"),
    *(case(AGG, [noise(f'mechanism = "discrete_laplace", epsilon = {eps}')],
           "disclosure.noise.epsilon", "must be in (0, 20]", f"epsilon-{name}")
      for name, eps in [("zero", "0"), ("negative", "-1.0"), ("above-20", "20.5"),
                        ("nan", "nan"), ("inf", "inf")]),
    case(AGG, [noise('mechanism = "discrete_gaussian", epsilon = 1.0')], "disclosure.noise.delta",
         "the discrete Gaussian needs 0 < delta < 1", "gaussian-without-delta"),
    *(case(AGG, [noise(f'mechanism = "discrete_gaussian", epsilon = 1.0, delta = {delta}')],
           "disclosure.noise.delta", "the discrete Gaussian needs 0 < delta < 1",
           f"gaussian-delta-{name}")
      for name, delta in [("one", "1.0"), ("negative", "-1e-6"), ("nan", "nan")]),
    case(AGG, [noise('mechanism = "discrete_gaussian", epsilon = 1.0, delta = "small"')],
         "disclosure.noise.delta", "expected a number, got str", "delta-text"),
    case(AGG, [noise('mechanism = "discrete_laplace", epsilon = 1.0, delta = 1e-6')],
         "disclosure.noise.delta", "the discrete Laplace mechanism takes no delta",
         "laplace-with-delta"),
    case(AGG, [noise('mechanism = "discrete_laplace", epsilon = 1.0, scale = 2')],
         "disclosure.noise.scale", "unknown field (misspelt?)", "noise-unknown-field"),
    # ---- distribution ----
    case(DST, [('measure = "duration_days"\n', "")], "distribution.measure",
         "required field is missing", "measure-missing"),
    case(DST, [('bins = [0, 30, 90, 180]\n', "")], "distribution.bins",
         "required field is missing", "bins-missing"),
    case(DST, [("[0, 30, 90, 180]", "[0, 90, 30]")], "distribution.bins",
         "edges must be strictly increasing", "bins-not-increasing"),
    case(DST, [("[0, 30, 90, 180]", "[30]")], "distribution.bins", "expected 2 to 256 edges",
         "bins-one-edge"),
    case(DST, [("[0, 30, 90, 180]", "[0, 30.5, 90]")], "distribution.bins",
         "expected a list of whole days", "bins-not-whole-days"),
    case(DST, [("[0, 30, 90, 180]", "[-30, 0, 30]")], "distribution.bins",
         "edges must lie in 0 .. 100000 days", "bins-negative"),
    case(DST, [("[0.25, 0.5, 0.75]", "[0.5, 1.0]")], "distribution.quantiles",
         "1.0 is not a fraction strictly between 0 and 1", "quantile-one"),
    case(DST, [("[0.25, 0.5, 0.75]", "[0.123456]")], "distribution.quantiles",
         "at most 4 decimals", "quantile-too-precise"),
    case(DST, [("[0.25, 0.5, 0.75]", "[0.75, 0.25]")], "distribution.quantiles",
         "quantiles must be strictly increasing", "quantiles-not-increasing"),
    case(DST, [('censor = "censored"', 'censor = "duration_days"')], "distribution.censor",
         "the censoring column is the measure column", "censor-is-measure"),
    case(DST, [('measure = "duration_days"', 'measure = "line"')], "distribution.measure",
         "column 'line' is also a group_by column", "measure-grouped"),
    case(DST, [in_disclosure("round_to = 5")], "disclosure.round_to",
         "distribution jobs release no values to round", "round-to"),
    case(DST, [in_disclosure(LAPLACE)], "disclosure.noise",
         "distribution jobs take min_cell, suppress_zero", "noise-refused"),
    case(DST, [after("bins = [0, 30, 90, 180]\n", 'kind = "km"')], "distribution.kind",
         "unknown field (misspelt?)", "unknown-field"),
]


@pytest.mark.parametrize("kind,edits,field,fragment", CASES)
def test_each_bad_spec_names_its_field(kind: str, edits: list[tuple[str, str]], field: str,
                                       fragment: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_spec(edited(BASES[kind], *edits), SOURCE)
    assert err.value.source == SOURCE
    assert err.value.field == field, str(err.value)
    assert str(err.value).startswith(f"{SOURCE}: {field}: "), str(err.value)
    assert fragment in str(err.value), str(err.value)


def many_cells(values_per_column: tuple[int, ...]) -> bytes:
    """The aggregate base grouped by one column per entry, each with that many values."""
    columns = [f"c{i}" for i in range(len(values_per_column))]
    group_by = ", ".join(f'"{c}"' for c in columns)
    categories = "".join(f"{c} = [{', '.join(str(v) for v in range(n))}]\n"
                         for c, n in zip(columns, values_per_column, strict=True))
    return edited(AGGREGATE, ('group_by = ["product", "line"]', f"group_by = [{group_by}]"),
                  (AGGREGATE_CATEGORIES, f"\n[categories]\n{categories}"))


def test_a_table_of_more_than_ten_million_cells_is_refused() -> None:
    with pytest.raises(ConfigError) as err:
        parse_spec(many_cells((100, 100, 100, 11)), SOURCE)
    assert err.value.field == "categories"
    assert str(err.value) == (f"{SOURCE}: categories: the table has 11000000 cells; the limit "
                              "is 10,000,000")
    assert parse_spec(many_cells((100, 100, 100, 10)), SOURCE).cells == 10_000_000


@pytest.mark.parametrize("raw,message", [
    (b'name = "product-use\xff"\n', "not UTF-8 text"),
    (b'name = "product-use\n', "invalid TOML: "),
    (AGGREGATE.encode() + b'[input]\ndataset = "again"\n', "invalid TOML: "),
], ids=["not-utf8", "unterminated-string", "table-defined-twice"])
def test_bytes_that_are_no_toml_name_the_file(raw: bytes, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_spec(raw, SOURCE)
    assert err.value.source == SOURCE and err.value.field is None
    assert str(err.value).startswith(f"{SOURCE}: {message}")


# ---- what good specs parse to ------------------------------------------------------------

def test_the_aggregate_base() -> None:
    spec = parse_spec(AGGREGATE.encode(), SOURCE)
    assert (spec.name, spec.kind) == ("product-use", "aggregate")
    assert spec.parties == ("hospital_a", "hospital_b", "hospital_c")
    assert spec.recipients == ("coordinator",)
    assert spec.group_by == ("product", "line")
    assert spec.categories == (("product", ("osimertinib", "durvalumab", "olaparib")),
                               ("line", ("1", "2", "3+")))
    assert spec.shape == (3, 3) and spec.cells == 9
    rules = spec.disclosure
    assert (rules.min_cell, rules.suppress_zero, rules.min_contributors) == (10, False, 1)
    assert spec.noise is None and spec.round_to == 1
    assert spec.sha256 == hashlib.sha256(AGGREGATE.encode()).hexdigest()


def test_the_hash_is_over_the_exact_bytes() -> None:
    """A comment changes nothing parsed, and still changes the hash the parties agree on."""
    commented = AGGREGATE.encode() + b"# same job\n"
    plain, other = parse_spec(AGGREGATE.encode()), parse_spec(commented)
    assert plain.categories == other.categories and plain.disclosure == other.disclosure
    assert other.sha256 == hashlib.sha256(commented).hexdigest() != plain.sha256


def test_aggregate_defaults_and_options() -> None:
    spec = parse_spec(edited(
        AGGREGATE,
        ('recipients = ["coordinator"]\n', ""),  # default: whoever submitted the job
        ('measure = "count"\n', ""),  # default: count
        (AGGREGATE_CATEGORIES, '\n[categories]\nline = [1, 2, "3+"]\n'
                               'product = ["osimertinib", "durvalumab", "olaparib"]\n'),
        (DISCLOSURE, ""),
    ))
    assert spec.recipients == ("coordinator",)
    # categories come in group_by order, whatever the table's; numbers are taken as text
    assert spec.categories == (("product", ("osimertinib", "durvalumab", "olaparib")),
                               ("line", ("1", "2", "3+")))
    rules = spec.disclosure
    assert (rules.min_cell, rules.suppress_zero, rules.min_contributors) == (10, False, 1)
    strict = parse_spec(edited(AGGREGATE, ('recipients = ["coordinator"]',
                                           'recipients = ["coordinator", "hospital_b"]'),
                               ("min_cell = 10", "min_cell = 15\nsuppress_zero = true\n"
                                                 "min_contributors = 3\nround_to = 5")))
    assert strict.recipients == ("coordinator", "hospital_b")
    rules = strict.disclosure
    assert (rules.min_cell, rules.suppress_zero, rules.min_contributors) == (15, True, 3)
    assert strict.round_to == 5


@pytest.mark.parametrize("fields,mechanism,epsilon,delta", [
    ('mechanism = "discrete_laplace", epsilon = 1', "discrete_laplace", 1.0, 0.0),
    ('mechanism = "discrete_laplace", epsilon = 20', "discrete_laplace", 20.0, 0.0),
    ('mechanism = "discrete_laplace", epsilon = 0.01, delta = 0', "discrete_laplace", 0.01,
     0.0),
    ('mechanism = "discrete_gaussian", epsilon = 0.5, delta = 1e-6', "discrete_gaussian", 0.5,
     1e-6),
])
def test_noise(fields: str, mechanism: str, epsilon: float, delta: float) -> None:
    spec = parse_spec(edited(AGGREGATE, noise(fields)))
    assert spec.noise is not None
    assert (spec.noise.mechanism, spec.noise.epsilon, spec.noise.delta) == \
        (mechanism, epsilon, delta)
    assert isinstance(spec.noise.epsilon, float)


@pytest.mark.parametrize("extra", [
    WINDOW,
    'window = { column = "start_date", from = "2024-01-01", to = "2024-01-02" }',
    'filter = { indication = ["NSCLC", "SCLC"], year = [2023, 2024] }',
])
def test_scopes_that_parse(extra: str) -> None:
    """A window (TOML dates or ISO text, one day at least) and filters on columns outside
    group_by change nothing in the table's shape."""
    for base in (AGGREGATE, OVERLAP):
        spec = parse_spec(edited(base, in_input(extra)))
        assert spec.cells == parse_spec(base.encode()).cells


def test_the_linkage_base() -> None:
    spec = parse_spec(LINKAGE.encode(), SOURCE)
    assert (spec.name, spec.kind) == ("hospital-insurer-linkage", "linkage")
    assert spec.parties == ("hospital_a", "insurer_a")
    assert spec.recipients == ("coordinator",)
    # the left side's columns, then the right's: the order of the cross table
    assert spec.group_by == ("indication", "line", "product")
    assert [c for c, _ in spec.categories] == ["indication", "line", "product"]
    assert spec.shape == (5, 3, 3) and spec.cells == 45
    rules = spec.disclosure
    # zeros are suppressed by default in a linked cross table
    assert (rules.min_cell, rules.suppress_zero, rules.min_contributors) == (10, True, 1)
    assert spec.noise is None


def test_linkage_variants() -> None:
    one_side = parse_spec(edited(
        LINKAGE, ('by = ["indication", "line"]\n', ""), (REDUCE, ""),
        ('indication = ["NSCLC", "SCLC", "breast", "ovarian", "prostate"]\n', ""),
        ('line = ["1", "2", "3+"]\n', ""),
        after('by = ["product"]\n', 'reduce = { order_by = "claim_date", keep = "last" }\n'
                                    'filter = { indication = ["NSCLC"] }\n'
                                    'window = { column = "claim_date", from = 2024-01-01, '
                                    'to = 2025-01-01 }'),
        ("min_cell = 10", "min_cell = 5\nsuppress_zero = false\nround_to = 10")))
    assert one_side.group_by == ("product",) and one_side.shape == (3,)
    rules = one_side.disclosure
    assert (rules.min_cell, rules.suppress_zero) == (5, False) and one_side.round_to == 10
    assert parse_spec(edited(LINKAGE, (DISCLOSURE, ""))).disclosure.suppress_zero


def test_the_overlap_base() -> None:
    spec = parse_spec(OVERLAP.encode(), SOURCE)
    assert (spec.name, spec.kind) == ("patients-across-hospitals", "overlap")
    assert spec.parties == ("hospital_a", "hospital_b", "hospital_c")
    # the histogram: how many persons are seen at 1, 2 or 3 parties
    assert spec.group_by == ("parties_seen",)
    assert spec.categories == (("parties_seen", ("1", "2", "3")),)
    assert spec.shape == (3,) and spec.cells == 3
    rules = spec.disclosure
    assert (rules.min_cell, rules.suppress_zero, rules.min_contributors) == (10, False, 1)
    two = parse_spec(edited(OVERLAP, ('"hospital_b", "hospital_c"]', '"hospital_b"]'),
                            ("min_cell = 10", "min_cell = 20\nsuppress_zero = true")))
    assert two.categories == (("parties_seen", ("1", "2")),)
    assert (two.disclosure.min_cell, two.disclosure.suppress_zero) == (20, True)


@pytest.mark.parametrize("kind", [LNK, OVL])
def test_pad_to_may_be_the_largest_list_bound(kind: str) -> None:
    spec = parse_spec(edited(BASES[kind], ("pad_to = 10000", "pad_to = 10_000_000")))
    assert spec.kind == kind
    assert parse_spec(edited(BASES[kind], ("pad_to = 10000", "pad_to = 1"))).kind == kind


@pytest.mark.parametrize("name", ["../outside", "/abs", "a/b", ".hidden", "", "a" * 129])
def test_a_use_case_name_is_never_a_path(name: str) -> None:
    """The name becomes the coordinator's result folder: refused unless it is a plain name."""
    base = b'name = "ok"\nkind = "aggregate"\nparties = ["a", "b"]\n[input]\ndataset = "d"\n' \
        b'[aggregate]\ngroup_by = ["x"]\n[categories]\nx = ["1"]\n'
    assert parse_spec(base).name == "ok"
    with pytest.raises(ConfigError) as refused:
        parse_spec(base.replace(b'"ok"', f'"{name}"'.encode()))
    assert refused.value.field == "name"
