"""The README's walkthrough, exactly as written, on a fresh copy of the repository: the
shipped configs, seven workers and a dealer started in the background, `mpc run` at once
(it waits for them), the audit; and every use case the README lists is allowed by the
shipped configs of every party it names."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from mpc.config.party import load_party_config
from mpc.config.spec import parse_spec
from mpc.worker.policy import approve

ROOT = Path(__file__).resolve().parents[2]
MARKER = "a test runs this block exactly as written"


def walkthrough_block(readme: str) -> str:
    """The first fenced block after the sentence that says a test runs it."""
    at = readme.index(MARKER)
    match = re.search(r"```\n(.*?)```", readme[at:], re.S)
    assert match, "no code block after the walkthrough's sentence"
    return match.group(1)


def listed_usecases(readme: str) -> list[str]:
    table = readme[readme.index("### The use cases"):]
    table = table[:table.index("\n\n", table.index("|"))]
    return re.findall(r"^\| `([a-z0-9-]+)` \|", table, re.M)


def fresh_checkout(dest: Path) -> Path:
    """The repository's files as a clone would have them (tracked and new, not ignored),
    with the installed environment where `make install` puts it."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard",
                             "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in filter(None, listed.decode().split("\0")):
        source = ROOT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    assert (ROOT / ".venv" / "bin" / "mpc").exists(), "run `make install` first"
    (dest / ".venv").symlink_to(ROOT / ".venv")
    return dest


@pytest.fixture(scope="module")
def walked(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    checkout = fresh_checkout(tmp_path_factory.mktemp("checkout"))
    block = walkthrough_block((checkout / "README.md").read_text(encoding="utf-8"))
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = "/usr/local/bin:/usr/bin:/bin"  # no mpc on it but the block's own step
    # Output to a file, not a pipe: services the block leaves running would hold a pipe open.
    log = checkout / "walkthrough.out"
    with log.open("w") as sink:
        proc = subprocess.Popen(["bash", "-e", "-c", block], cwd=checkout, env=env,
                                stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            proc.wait(timeout=900)
        finally:
            # Whatever the block left running (it stops its services itself on success).
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
    out = log.read_text(errors="replace")
    assert proc.returncode == 0, out[-6000:]
    return checkout, out


def test_the_walkthrough_runs_as_written(walked: tuple[Path, str]) -> None:
    checkout, out = walked
    for usecase in ("oncology-product-use", "claims-volume", "dispensing-volume",
                    "oncology-treatment-duration"):
        folder = checkout / "results" / usecase
        assert (folder / "result.csv").is_file() and (folder / "report.html").is_file(), out
    assert "Verdict: PASS: every check holds" in out, out[-3000:]


def test_every_listed_usecase_is_allowed_by_the_shipped_configs(
        walked: tuple[Path, str]) -> None:
    checkout, _ = walked  # the configs load once the walkthrough made certificates and data
    readme = (checkout / "README.md").read_text(encoding="utf-8")
    names = listed_usecases(readme)
    assert len(names) >= 9 and sorted(names) == sorted(
        p.stem for p in (checkout / "usecases").glob("*.toml")), names
    for name in names:
        text = (checkout / "usecases" / f"{name}.toml").read_bytes()
        for party in parse_spec(text).parties:
            config = load_party_config(checkout / "parties" / party / "party.toml")
            approve(config, text, "coordinator")  # PolicyRefused names what is missing
