"""The example configs in the repository load (the README's walkthrough uses them)."""

from __future__ import annotations

from pathlib import Path

from mpc.config import load_dealer_config, load_federation, load_party_config, load_spec

ROOT = Path(__file__).resolve().parents[2]


def test_example_configs_load() -> None:
    fed = load_federation(ROOT / "federation.toml")
    for path in sorted(ROOT.glob("parties/*/party.toml")):
        cfg = load_party_config(path)
        assert fed.party(cfg.name).address == cfg.listen
        assert cfg.tls.cert.resolve() == (ROOT / "certs" / f"{cfg.name}.pem").resolve()
    assert load_dealer_config(ROOT / "parties" / "dealer.toml").listen == fed.dealer.address
    for spec in sorted(ROOT.glob("usecases/*.toml")):
        assert set(load_spec(spec).parties) <= set(fed.parties)
