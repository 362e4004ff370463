"""The federation file: who is where, and (for the coordinator) its own TLS identity."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mpc.config.fields import Fields, host_port, load_toml
from mpc.config.party import TlsFiles


@dataclass(frozen=True)
class Member:
    name: str
    address: str | None  # host:port of its service; None for the coordinator
    cert: Path | None = None  # public certificate, for auditors
    signing_public_key: Path | None = None


@dataclass(frozen=True)
class Federation:
    ca: Path
    coordinator: Member
    coordinator_tls: TlsFiles | None  # the coordinator's own key pair, on its copy only
    dealer: Member
    parties: dict[str, Member]
    source: str = "<federation>"

    def party(self, name: str) -> Member:
        try:
            return self.parties[name]
        except KeyError:
            known = ", ".join(sorted(self.parties)) or "none"
            raise KeyError(f"party {name!r} is not in {self.source} (known: {known})") from None


def _member(name: str, f: Fields, needs_address: bool) -> Member:
    member = Member(
        name=f.str("name", name),
        address=host_port(f, "address") if needs_address else None,
        cert=f.path("cert", None),
        signing_public_key=f.path("signing_public_key", None),
    )
    return member


def load_federation(path: Path) -> Federation:
    data, _ = load_toml(path)
    f = Fields(data, str(path), base_dir=path.parent)
    ca = f.path("ca")
    coord = f.table("coordinator")
    assert coord is not None
    coordinator = _member("coordinator", coord, needs_address=False)
    tls = None
    if coord.has("key"):
        tls = TlsFiles(ca=ca, cert=coord.path("cert"), key=coord.path("key"))
    coord.done()
    dealer_table = f.table("dealer")
    assert dealer_table is not None
    dealer = _member("dealer", dealer_table, needs_address=True)
    dealer_table.done()
    parties_table = f.table("parties")
    assert parties_table is not None
    parties = {}
    for name in parties_table.names():
        sub = parties_table.table(name)
        assert sub is not None
        parties[name] = _member(name, sub, needs_address=True)
        sub.done()
    if not parties:
        raise f.error("parties", "a federation needs at least one party")
    f.done()
    return Federation(ca=ca, coordinator=coordinator, coordinator_tls=tls, dealer=dealer,
                      parties=parties, source=str(path))
