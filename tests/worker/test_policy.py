"""A party's policy on its own: `approve`, `bounds_problem` and `floors` on a party config
written to a temporary folder and specs written here. No processes, no network: every
decision is made on the spec and the config alone."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from mpc.config.party import PartyConfig, load_party_config
from mpc.config.spec import parse_spec
from mpc.errors import PolicyRefused
from mpc.worker.policy import approve, bounds_problem, floors

HOSPITALS = ("hospital_a", "hospital_b", "hospital_c")
TREATMENTS = "[datasets.treatments.bounds]"
CLAIMS = "[datasets.claims.bounds]"
# What the party lets specs ask of its datasets (as the demo's hospitals and insurers do).
BOUNDS: dict[str, dict[str, Any]] = {
    "treatments": {"person_key": "pseudonym", "max_rows_per_person": 5,
                   "max_persons": 10_000, "filter_columns": ["indication"],
                   "window_columns": ["start_date"], "min_window_days": 90,
                   "clip": {"cycles": [0, 40]}, "max_epsilon": 1.0, "epsilon_budget": 10.0},
    "claims": {"person_key": "pseudonym", "max_persons": 5_000,
               "window_columns": ["claim_date"], "min_window_days": 30},
}
USECASES = ["product-use", "patients-across", "hospital-insurer"]


def party_config(tmp_path: Path, name: str = "hospital_a", *,
                 bounds: Mapping[str, Mapping[str, Any]] = BOUNDS,
                 policy: Mapping[str, Any] | None = None,
                 limits: Mapping[str, Any] | None = None) -> PartyConfig:
    """A party config file in `tmp_path`, loaded as a worker loads it."""
    config: dict[str, Any] = {
        "name": name, "listen": "127.0.0.1:7001",
        "tls": {"ca": "certs/ca.pem", "cert": f"certs/{name}.pem", "key": f"certs/{name}.key"},
        "signing": {"key": f"certs/{name}.sign.key"},
        "audit": {"log": f"logs/{name}.jsonl"},
        "datasets": {dataset: {"path": f"data/{dataset}.csv", "bounds": dict(b)}
                     for dataset, b in bounds.items()},
        "policy": {"coordinators": ["coordinator"], "usecases": USECASES, **(policy or {})},
    }
    if limits is not None:
        config["limits"] = dict(limits)
    path = tmp_path / f"{name}.toml"
    path.write_text(tomli_w.dumps(config))
    return load_party_config(path)


def quoted(values: Sequence[str]) -> str:
    return "[" + ", ".join(f'"{v}"' for v in values) + "]"


CATEGORIES = {"product": ["osimertinib", "durvalumab", "olaparib"], "line": ["1", "2", "3+"],
              "indication": ["NSCLC", "SCLC", "breast"], "pseudonym": ["p1", "p2"]}


def aggregate(name: str = "product-use", parties: Sequence[str] = HOSPITALS, *,
              group_by: Sequence[str] = ("product", "line"), measure: str = "count",
              dataset: str = "treatments", scope: str = "", disclosure: str = "") -> bytes:
    """An aggregate spec; `scope`: lines of [input] (window, filter); `disclosure`: lines of
    [disclosure] (noise)."""
    return "\n".join([
        f'name = "{name}"', 'kind = "aggregate"', f"parties = {quoted(parties)}",
        "[input]", f'dataset = "{dataset}"', scope,
        "[aggregate]", f"group_by = {quoted(group_by)}", f'measure = "{measure}"',
        "[categories]", *(f"{c} = {quoted(CATEGORIES[c])}" for c in group_by),
        "[disclosure]", "min_cell = 10", disclosure, ""]).encode()


def overlap(pad_to: int = 10_000, key: str = "pseudonym", scope: str = "") -> bytes:
    return "\n".join([
        'name = "patients-across"', 'kind = "overlap"', f"parties = {quoted(HOSPITALS)}",
        "[input]", 'dataset = "treatments"', scope,
        "[overlap]", f'key = "{key}"', f"pad_to = {pad_to}", ""]).encode()


def linkage(pad_to: int = 10_000, key: str = "pseudonym", right_scope: str = "") -> bytes:
    return "\n".join([
        'name = "hospital-insurer"', 'kind = "linkage"',
        'parties = ["hospital_a", "insurer_a"]',
        "[linkage]", f'key = "{key}"', f"pad_to = {pad_to}",
        '[linkage.left]', 'party = "hospital_a"', 'dataset = "treatments"',
        'by = ["line"]',
        '[linkage.right]', 'party = "insurer_a"', 'dataset = "claims"', 'by = ["product"]',
        right_scope,
        "[categories]", f"line = {quoted(CATEGORIES['line'])}",
        f"product = {quoted(CATEGORIES['product'])}", ""]).encode()


def window(column: str, start: str, end: str) -> str:
    return f'window = {{ column = "{column}", from = {start}, to = {end} }}'


LAPLACE = 'noise = { mechanism = "discrete_laplace", epsilon = 1.0 }'


def refusal(config: PartyConfig, spec: bytes, coordinator: str = "coordinator") -> str:
    """The reason `config`'s party refuses `spec`; its own name is on the error."""
    with pytest.raises(PolicyRefused) as err:
        approve(config, spec, coordinator)
    assert err.value.party == config.name
    assert str(err.value) == f"{config.name} refused the job: {err.value.reason}"
    return err.value.reason


# ---- refusals that do not depend on the dataset's bounds ---------------------------------

def test_a_coordinator_outside_the_policy_is_refused(tmp_path: Path) -> None:
    config = party_config(tmp_path)
    assert refusal(config, aggregate(), "mallory") == \
        "coordinator 'mallory' is not allowed by its policy"
    # checked before the spec is even read
    assert refusal(config, b"\xff", "mallory").startswith("coordinator 'mallory'")


def test_an_invalid_spec_is_refused_with_the_parsers_reason(tmp_path: Path) -> None:
    reason = refusal(party_config(tmp_path), aggregate().replace(b'"aggregate"', b'"magic"'))
    assert reason == ("the spec is invalid: submitted spec: kind: unknown kind 'magic' "
                      "(expected aggregate, linkage, overlap, distribution)")
    assert refusal(party_config(tmp_path), b"\xff") == \
        "the spec is invalid: submitted spec: not UTF-8 text"


def test_a_use_case_outside_the_policy_is_refused(tmp_path: Path) -> None:
    assert refusal(party_config(tmp_path), aggregate("product-use-2")) == \
        "use case 'product-use-2' is not allowed by its policy"


def test_a_pinned_use_case_takes_only_its_own_bytes(tmp_path: Path) -> None:
    spec = aggregate()
    digest = hashlib.sha256(spec).hexdigest()
    config = party_config(tmp_path, policy={"pinned": {"product-use": digest}})
    assert approve(config, spec, "coordinator").sha256 == digest
    changed = spec.replace(b"min_cell = 10", b"min_cell = 11")
    assert refusal(config, changed) == (
        f"use case 'product-use' is pinned to SHA-256 {digest[:12]}…, the submitted spec has "
        f"{hashlib.sha256(changed).hexdigest()[:12]}…")
    # a pin of one use case says nothing about the others
    assert approve(config, overlap(), "coordinator").kind == "overlap"


def test_limits_on_cells_and_parties(tmp_path: Path) -> None:
    config = party_config(tmp_path, limits={"max_cells": 8, "max_parties": 2})
    assert refusal(config, aggregate(parties=HOSPITALS[:2])) == \
        "the table has 9 cells; its limit is 8 ([limits] max_cells in party.toml)"
    assert refusal(config, aggregate(group_by=("line",))) == (
        "the job has 3 parties; its limit is 2 ([limits] max_parties in party.toml; "
        "`mpc demo --parties-limit`)")
    assert approve(config, aggregate(parties=HOSPITALS[:2], group_by=("line",)),
                   "coordinator").cells == 3
    at_limit = party_config(tmp_path, limits={"max_cells": 9, "max_parties": 3})
    assert approve(at_limit, aggregate(), "coordinator").cells == 9


def test_a_job_of_other_parties_is_refused(tmp_path: Path) -> None:
    assert refusal(party_config(tmp_path), aggregate(parties=HOSPITALS[1:])) == \
        "it is not one of the use case's parties (hospital_b, hospital_c)"


def test_a_dataset_the_party_does_not_have_is_refused(tmp_path: Path) -> None:
    assert refusal(party_config(tmp_path), aggregate(dataset="claims_2024")) == \
        "it has no dataset named 'claims_2024'"
    only_claims = party_config(tmp_path, bounds={"claims": BOUNDS["claims"]})
    assert refusal(only_claims, overlap()) == "it has no dataset named 'treatments'"


# ---- refusals by the dataset's bounds ----------------------------------------------------

NO_NOISE = {k: v for k, v in BOUNDS["treatments"].items() if k != "max_epsilon"}
NO_ROWS = {k: v for k, v in BOUNDS["treatments"].items() if k != "max_rows_per_person"}
NO_PERSONS = {k: v for k, v in BOUNDS["treatments"].items() if k != "max_persons"}
NO_KEY = {k: v for k, v in BOUNDS["treatments"].items() if k != "person_key"}
NO_CLIP = {k: v for k, v in BOUNDS["treatments"].items() if k != "clip"}
NO_FILTERS = {k: v for k, v in BOUNDS["treatments"].items() if k != "filter_columns"}


@pytest.mark.parametrize("spec,bounds,reason", [
    (aggregate(group_by=("pseudonym", "line")), BOUNDS["treatments"],
     "dataset 'treatments' is never grouped by its person key 'pseudonym'"),
    (aggregate(scope='filter = { pseudonym = ["p1"] }'), BOUNDS["treatments"],
     "dataset 'treatments' is never filtered on its person key 'pseudonym'"),
    (aggregate(scope='filter = { indication = ["NSCLC"], stage = ["IV"] }'),
     BOUNDS["treatments"],
     f"dataset 'treatments' may not be filtered on 'stage' (allowed: indication; {TREATMENTS} "
     "filter_columns)"),
    (aggregate(scope='filter = { indication = ["NSCLC"] }'), NO_FILTERS,
     f"dataset 'treatments' may not be filtered on 'indication' (allowed: none; {TREATMENTS} "
     "filter_columns)"),
    (aggregate(scope=window("end_date", "2024-01-01", "2024-07-01")), BOUNDS["treatments"],
     f"dataset 'treatments' takes no window on 'end_date' (allowed: start_date; {TREATMENTS} "
     "window_columns)"),
    (aggregate(scope=window("start_date", "2024-01-01", "2024-03-30")), BOUNDS["treatments"],
     "the window covers 89 days; dataset 'treatments' takes windows of at least 90 days "
     f"({TREATMENTS} min_window_days)"),
    (overlap(scope=window("start_date", "2024-01-01", "2024-01-02")), BOUNDS["treatments"],
     "the window covers 1 days; dataset 'treatments' takes windows of at least 90 days"),
    (overlap(), NO_PERSONS,
     "dataset 'treatments' takes no overlap jobs: its bounds name no person_key and "
     f"max_persons ({TREATMENTS})"),
    (overlap(), NO_KEY, "dataset 'treatments' takes no overlap jobs"),
    (overlap(key="patient_id"), BOUNDS["treatments"],
     f"dataset 'treatments' identifies persons by 'pseudonym', not 'patient_id' ({TREATMENTS} "
     "person_key)"),
    (overlap(pad_to=9_999), BOUNDS["treatments"],
     f"pad_to 9999 is below the list bound of dataset 'treatments' (10000, {TREATMENTS} "
     "max_persons): lists are padded to at least the bound"),
    (linkage(pad_to=9_999), BOUNDS["treatments"],
     "pad_to 9999 is below the list bound of dataset 'treatments' (10000"),
    (linkage(key="patient_id"), BOUNDS["treatments"],
     "dataset 'treatments' identifies persons by 'pseudonym', not 'patient_id'"),
    (aggregate(measure="sum:dose"), BOUNDS["treatments"],
     f"dataset 'treatments' has no clipping range for summed column 'dose' ({TREATMENTS} clip)"),
    (aggregate(measure="sum:cycles"), NO_CLIP,
     "dataset 'treatments' has no clipping range for summed column 'cycles'"),
    (aggregate(disclosure=LAPLACE), NO_NOISE,
     f"dataset 'treatments' allows no noisy releases ({TREATMENTS} max_epsilon)"),
    (aggregate(disclosure=LAPLACE.replace("1.0", "1.5")), BOUNDS["treatments"],
     f"epsilon 1.5 exceeds the 1 that dataset 'treatments' allows per job ({TREATMENTS} "
     "max_epsilon)"),
    (aggregate(disclosure=LAPLACE), NO_ROWS,
     "dataset 'treatments' has no contribution bounds, so noise cannot be calibrated "
     f"({TREATMENTS} person_key, max_rows_per_person)"),
    (aggregate(disclosure=LAPLACE), NO_KEY,
     "dataset 'treatments' has no contribution bounds, so noise cannot be calibrated"),
], ids=["group-by-person-key", "filter-on-person-key", "filter-column-not-allowed",
        "no-filters-allowed", "window-column-not-allowed", "window-too-short",
        "overlap-window-too-short", "overlap-without-list-bound", "overlap-without-person-key",
        "overlap-other-key", "overlap-pad-below-bound", "linkage-pad-below-bound",
        "linkage-other-key", "sum-without-clip", "sum-without-any-clip", "noise-not-allowed",
        "epsilon-above-bound", "noise-without-row-bound", "noise-without-person-key"])
def test_a_spec_asking_more_than_the_bounds_is_refused(tmp_path: Path, spec: bytes,
                                                       bounds: dict[str, Any],
                                                       reason: str) -> None:
    config = party_config(tmp_path, bounds={**BOUNDS, "treatments": bounds})
    refused = refusal(config, spec)
    assert refused.startswith(reason), refused
    # the same reason, asked of the bounds directly
    parsed = parse_spec(spec)
    assert bounds_problem(parsed, "hospital_a", config.datasets["treatments"].bounds) == refused


def test_a_linkage_side_is_checked_against_its_own_dataset(tmp_path: Path) -> None:
    """The insurer's side reads `claims`: its window, filter and list bound are checked
    against the claims bounds, not against the hospital's."""
    insurer = party_config(tmp_path, "insurer_a")
    assert approve(insurer, linkage(pad_to=5_000), "coordinator").parties == \
        ("hospital_a", "insurer_a")
    # 5,000 is enough for the insurer's claims, not for the hospital's treatments
    hospital = party_config(tmp_path, "hospital_a")
    assert refusal(hospital, linkage(pad_to=5_000)).startswith(
        "pad_to 5000 is below the list bound of dataset 'treatments' (10000")
    assert refusal(insurer, linkage(right_scope=window("start_date", "2024-01-01",
                                                       "2025-01-01"))) == (
        f"dataset 'claims' takes no window on 'start_date' (allowed: claim_date; {CLAIMS} "
        "window_columns)")
    assert refusal(insurer, linkage(right_scope=window("claim_date", "2024-01-01",
                                                       "2024-01-30"))) == (
        "the window covers 29 days; dataset 'claims' takes windows of at least 30 days "
        f"({CLAIMS} min_window_days)")
    assert refusal(insurer, linkage(right_scope='filter = { indication = ["NSCLC"] }')) == (
        f"dataset 'claims' may not be filtered on 'indication' (allowed: none; {CLAIMS} "
        "filter_columns)")
    # the hospital does not judge the insurer's side: its own has no window or filter
    scoped = linkage(right_scope=window("claim_date", "2024-01-01", "2024-01-31"))
    assert approve(hospital, scoped, "coordinator").kind == "linkage"
    assert approve(insurer, scoped, "coordinator").kind == "linkage"


def test_a_contributor_floor_refuses_noisy_releases(tmp_path: Path) -> None:
    config = party_config(tmp_path, policy={"min_contributors_floor": 2})
    assert refusal(config, aggregate(disclosure=LAPLACE)) == (
        "its min_contributors_floor (2) cannot be applied to a noisy release (the contributor "
        "rule looks at the raw data); ask for the release without noise")
    assert approve(config, aggregate(), "coordinator").noise is None
    # a bounds problem is named first
    assert refusal(config, aggregate(disclosure=LAPLACE.replace("1.0", "2.0"))).startswith(
        "epsilon 2 exceeds the 1 that dataset 'treatments' allows per job")


# ---- approvals ---------------------------------------------------------------------------

@pytest.mark.parametrize("spec", [
    aggregate(),
    aggregate(measure="count_distinct:pseudonym"),
    aggregate(measure="sum:cycles"),
    aggregate(scope='filter = { indication = ["NSCLC", "SCLC"] }'),
    aggregate(scope=window("start_date", "2024-01-01", "2024-03-31")),  # 90 days: the least
    aggregate(disclosure=LAPLACE),  # epsilon at the bound
    aggregate(disclosure='noise = { mechanism = "discrete_gaussian", epsilon = 0.5, '
                         'delta = 1e-6 }'),
    aggregate(measure="sum:cycles", disclosure=LAPLACE),
    overlap(),  # pad_to at the bound
    overlap(pad_to=20_000, scope=window("start_date", "2023-01-01", "2024-01-01")),
    linkage(),
], ids=["count", "count-distinct", "sum-clipped", "filter", "window-at-least", "laplace",
        "gaussian", "noisy-sum", "overlap", "overlap-scoped", "linkage"])
def test_specs_within_the_bounds_are_approved(tmp_path: Path, spec: bytes) -> None:
    config = party_config(tmp_path)
    approved = approve(config, spec, "coordinator")
    assert approved.sha256 == hashlib.sha256(spec).hexdigest()
    assert approved.parties == parse_spec(spec).parties
    assert bounds_problem(approved, "hospital_a", config.datasets["treatments"].bounds) is None


def test_the_default_bounds_allow_only_plain_aggregates(tmp_path: Path) -> None:
    """A dataset without [bounds]: counts and distinct counts, nothing else."""
    config = party_config(tmp_path, bounds={"treatments": {}})
    assert approve(config, aggregate(), "coordinator").kind == "aggregate"
    assert approve(config, aggregate(measure="count_distinct:pseudonym"), "coordinator")
    for spec, reason in [
        (aggregate(scope='filter = { indication = ["NSCLC"] }'),
         "dataset 'treatments' may not be filtered on 'indication' (allowed: none"),
        (aggregate(scope=window("start_date", "2020-01-01", "2025-01-01")),
         "dataset 'treatments' takes no window on 'start_date' (allowed: none"),
        (aggregate(measure="sum:cycles"), "dataset 'treatments' has no clipping range"),
        (aggregate(disclosure=LAPLACE), "dataset 'treatments' allows no noisy releases"),
        (overlap(), "dataset 'treatments' takes no overlap jobs"),
        (linkage(), "dataset 'treatments' takes no linkage jobs"),
    ]:
        assert refusal(config, spec).startswith(reason)


# ---- floors ------------------------------------------------------------------------------

def test_floors_are_the_policys_minimum_rules(tmp_path: Path) -> None:
    config = party_config(tmp_path, policy={"min_cell_floor": 15, "min_contributors_floor": 2})
    rules = floors(config, parse_spec(aggregate()))
    assert (rules.min_cell, rules.suppress_zero, rules.min_contributors, rules.sensitivity) \
        == (15, False, 2, 0)
    defaults = floors(party_config(tmp_path), parse_spec(aggregate()))
    assert (defaults.min_cell, defaults.suppress_zero, defaults.min_contributors,
            defaults.sensitivity) == (1, False, 1, 0)
    # the floors raise the spec's rules where they are weaker, never lower them
    applied = parse_spec(aggregate()).disclosure.with_floors(rules)
    assert (applied.min_cell, applied.min_contributors) == (15, 2)


@pytest.mark.parametrize("measure,sensitivity", [
    ("count", 5),  # at most 5 rows per person, each adds 1
    ("count_distinct:pseudonym", 5),
    ("sum:cycles", 5 * 40),  # each row adds at most its clipping bound
])
def test_floors_of_a_noisy_release_carry_the_sensitivity(tmp_path: Path, measure: str,
                                                          sensitivity: int) -> None:
    config = party_config(tmp_path)
    noisy = parse_spec(aggregate(measure=measure, disclosure=LAPLACE))
    assert floors(config, noisy).sensitivity == sensitivity
    plain = parse_spec(aggregate(measure=measure))
    assert floors(config, plain).sensitivity == 0


def test_the_sensitivity_of_a_sum_is_its_largest_clipped_value(tmp_path: Path) -> None:
    bounds = {"treatments": {**BOUNDS["treatments"], "max_rows_per_person": 3,
                             "clip": {"cycles": [10, 25]}}}
    config = party_config(tmp_path, bounds=bounds)
    noisy = parse_spec(aggregate(measure="sum:cycles", disclosure=LAPLACE))
    assert floors(config, noisy).sensitivity == 3 * 25


def test_floors_read_the_bounds_of_the_partys_own_dataset(tmp_path: Path) -> None:
    """A party's floors come from its dataset of the job, not from one of the same name at
    another party: two hospitals with different row bounds give different sensitivities."""
    spec = parse_spec(aggregate(disclosure=LAPLACE))
    a = party_config(tmp_path, "hospital_a")
    b = party_config(tmp_path, "hospital_b", bounds={
        "treatments": {**BOUNDS["treatments"], "max_rows_per_person": 8}})
    assert floors(a, spec).sensitivity == 5 and floors(b, spec).sensitivity == 8
