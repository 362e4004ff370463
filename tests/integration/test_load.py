"""Load: 20 jobs in a row and 4 at once across five parties, all correct; the workers'
memory does not grow with the number of jobs."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from mpc.config.spec import parse_spec
from tests.conftest import FIVE, Harness, start_federation
from tests.helpers import plaintext_release, spec_text

SPECS = [spec_text("product-use", FIVE, min_cell=10, min_contributors=2),
         spec_text("product-use", FIVE, measure="count_distinct:pseudonym", min_cell=5),
         spec_text("product-use", FIVE, measure="sum:cycles", min_cell=50)]


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory,
            five_files: dict[str, Path]) -> Iterator[Harness]:
    fed = start_federation(tmp_path_factory.mktemp("load"), five_files, ["product-use"])
    try:
        yield Harness(fed, five_files)
    finally:
        fed.stop()


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


def run_and_check(harness: Harness, text: bytes) -> None:
    outcome = harness.run(text, timeout_s=300)
    keep, value, _ = plaintext_release(harness.files, parse_spec(text), outcome.rules)
    np.testing.assert_array_equal(outcome.table.keep, keep)
    np.testing.assert_array_equal(outcome.table.value, value)


def test_twenty_in_a_row_then_four_at_once(harness: Harness) -> None:
    workers = {p: harness.fed.procs[p].pid for p in FIVE}
    run_and_check(harness, SPECS[0])
    after_first = {p: rss_mib(pid) for p, pid in workers.items()}
    for i in range(1, 20):
        run_and_check(harness, SPECS[i % len(SPECS)])
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda i: run_and_check(harness, SPECS[i % len(SPECS)]), range(4)))
    after_all = {p: rss_mib(pid) for p, pid in workers.items()}
    for p in FIVE:
        print(f"{p}: worker RSS {after_first[p]:.1f} MiB after the first job, "
              f"{after_all[p]:.1f} MiB after 24 jobs")
    for p in FIVE:
        assert after_all[p] <= after_first[p] * 1.2, (p, after_first[p], after_all[p])
    assert not any(harness.fed.procs[p].poll() is not None for p in FIVE)
