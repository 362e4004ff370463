"""CSV files as hospitals export them (Excel in the Netherlands: Windows-1252, ';', decimal
commas, CRLF, a trailing ';') read like the same rows as a plain UTF-8 comma CSV; files
that cannot be read fail with fixed words that quote nothing from the file."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from mpc.config.party import DatasetConfig
from mpc.config.spec import Measure
from mpc.connectors import TableRequest, compute_local_table
from mpc.connectors.histogram import HistogramRequest, compute_local_histogram
from mpc.connectors.persons import PersonRequest, Reduce, compute_person_rows
from mpc.connectors.read_errors import file_error
from mpc.errors import DataError

PLACES = ("Curaçao", "hôpital", "Zürich", "plain")
PRODUCTS = ("osimertinib", "durvalumab")
CATEGORIES = (("place", PLACES), ("product", PRODUCTS))
EDGES = (0, 30, 90)
SENTINEL = "ZQX123"
COLUMNS = ("pseudonym", "place", "product", "cycles", "days", "dose")


def make_frame(seed: int = 7, n: int = 300) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "pseudonym": [f"p{i:03d}" for i in rng.integers(0, 90, n)],
        "place": rng.choice(PLACES, n),
        "product": rng.choice(PRODUCTS, n),
        "cycles": rng.integers(1, 31, n),
        "days": rng.integers(0, 200, n),
        "dose": rng.integers(1, 400, n) / 4,  # quarters: a decimal part in most rows
    })


def cells(df: pd.DataFrame, *, comma: bool = False, whole_as_decimal: bool = False
          ) -> list[list[str]]:
    """The rows as text, as a spreadsheet writes them."""
    def number(x: float, integer: bool) -> str:
        text = f"{x:.1f}" if integer and whole_as_decimal else (str(int(x)) if integer
                                                                 else repr(float(x)))
        return text.replace(".", ",") if comma else text

    return [[r.pseudonym, r.place, r.product, number(r.cycles, True), number(r.days, True),
             number(r.dose, False)] for r in df.itertuples(index=False)]


def write_text(path: Path, rows: Sequence[Sequence[str]], *, delimiter: str = ",",
               encoding: str = "utf-8", newline: str = "\n", trailing: str = "",
               header: Sequence[str] | None = COLUMNS, header_trailing: str | None = None,
               bom: bool = False) -> Path:
    lines = [] if header is None else [delimiter.join(header) + (
        trailing if header_trailing is None else header_trailing)]
    lines += [delimiter.join(r) + trailing for r in rows]
    data = (newline.join(lines) + newline).encode(encoding)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + data)
    return path


def plain(tmp_path: Path, df: pd.DataFrame) -> DatasetConfig:
    path = tmp_path / "plain.csv"
    df.to_csv(path, index=False)
    return DatasetConfig(name="treatments", path=path)


def dutch(tmp_path: Path, df: pd.DataFrame, **kw: object) -> DatasetConfig:
    """Excel's "CSV (gescheiden door lijstscheidingsteken)" on a Dutch Windows."""
    path = write_text(tmp_path / "excel.csv", cells(df, comma=True, whole_as_decimal=True),
                      delimiter=";", encoding="cp1252", newline="\r\n", trailing=";",
                      **kw)  # type: ignore[arg-type]
    return DatasetConfig(name="treatments", path=path, encoding="windows-1252",
                         delimiter=";", decimal=",")


def table_request(measure: Measure) -> TableRequest:
    return TableRequest(party="hospital_a", dataset="treatments", group_by=("place", "product"),
                        categories=CATEGORIES, measure=measure)


MEASURES = [Measure("count"), Measure("sum", "cycles"), Measure("sum", "days"),
            Measure("count_distinct", "pseudonym")]


def read_all(dataset: DatasetConfig) -> list[np.ndarray]:
    """What every reader makes of the dataset: tables, a histogram and person rows."""
    out = []
    for measure in MEASURES:
        table = compute_local_table(dataset, table_request(measure))
        out += [table.values, table.rows]
    hist = HistogramRequest.of(table_request(Measure("count")), "days", EDGES, None)
    out.append(compute_local_histogram(dataset, hist))
    persons = compute_person_rows(dataset, PersonRequest(
        party="hospital_a", dataset="treatments", key="pseudonym", by=("place",),
        categories=(CATEGORIES[0],), reduce=Reduce(order_by="dose", keep="last")))
    out += [np.array(persons.ids), persons.cells]
    return out


def assert_same(got: list[np.ndarray], want: list[np.ndarray]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)


@pytest.fixture
def frame() -> pd.DataFrame:
    return make_frame()


@pytest.fixture
def reference(tmp_path: Path, frame: pd.DataFrame) -> list[np.ndarray]:
    got = read_all(plain(tmp_path, frame))
    counts = got[1].reshape(len(PLACES), len(PRODUCTS))
    assert (counts[:3] > 0).all()  # the accented places are counted, not left out
    return got


# --- files that read like the plain CSV --------------------------------------------------


@pytest.mark.parametrize("header_trailing", [";", None, ""], ids=[
    "empty-last-header", "trailing-header", "no-trailing-on-header"])
def test_dutch_excel_export(tmp_path: Path, frame: pd.DataFrame, reference: list[np.ndarray],
                            header_trailing: str | None, caplog) -> None:
    raw = dutch(tmp_path, frame, header_trailing=header_trailing).path
    assert raw is not None
    data = raw.read_bytes()
    assert b"Cura\xe7ao" in data and b"\r\n" in data and b";\r\n" in data and b"12,0" in data
    with caplog.at_level(logging.WARNING):
        got = read_all(dutch(tmp_path, frame, header_trailing=header_trailing))
    assert_same(got, reference)
    assert "left out" not in caplog.text  # no row lost to a null from the trailing ';'


def test_dutch_excel_export_as_party_toml_says(tmp_path: Path, frame: pd.DataFrame,
                                              reference: list[np.ndarray]) -> None:
    from mpc.config.fields import Fields, parse_toml

    dutch(tmp_path, frame)
    text = (b'path = "excel.csv"\nencoding = "windows-1252"\ndelimiter = ";"\n'
            b'decimal = ","\n')
    dataset = DatasetConfig.parse("treatments", Fields(parse_toml(text, "party.toml"),
                                                       "party.toml", "datasets.treatments.",
                                                       base_dir=tmp_path))
    assert_same(read_all(dataset), reference)


def test_trailing_delimiter_is_not_a_column(tmp_path: Path, frame: pd.DataFrame) -> None:
    from mpc.connectors.engines import open_source

    req = table_request(Measure("count"))
    with open_source(dutch(tmp_path, frame), req) as source:
        assert source.columns == list(COLUMNS)
        types: dict[str, str] = dict(source.run(f"SELECT column_name, column_type FROM "
                                f"(DESCRIBE SELECT * FROM {source.relation})"))
    assert types["cycles"] == "BIGINT" and types["days"] == "BIGINT"  # '12,0' is 12
    assert types["dose"] == "DOUBLE"


def test_some_lines_with_a_trailing_delimiter(tmp_path: Path, frame: pd.DataFrame,
                                              reference: list[np.ndarray]) -> None:
    rows = cells(frame, comma=True)
    lines = [";".join(COLUMNS)] + [";".join(r) + (";" if i % 3 else "")
                                   for i, r in enumerate(rows)]
    path = tmp_path / "mixed.csv"
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode("cp1252"))
    dataset = DatasetConfig(name="treatments", path=path, encoding="cp1252", delimiter=";",
                            decimal=",")
    assert_same(read_all(dataset), reference)


@pytest.mark.parametrize("encoding,config", [
    ("utf-8", "utf-8"), ("latin-1", "latin-1"), ("latin-1", "iso-8859-1"),
    ("cp1252", "windows-1252"), ("utf-16", "utf-16"), ("utf-16-le", "utf-16")])
@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_encodings_and_delimiters(tmp_path: Path, frame: pd.DataFrame,
                                  reference: list[np.ndarray], encoding: str, config: str,
                                  delimiter: str) -> None:
    from mpc.config.party import CSV_ENCODINGS

    if encoding == "utf-16-le":  # Excel's "Unicode text": a byte order mark, then LE
        path = write_text(tmp_path / "u.csv", cells(frame), delimiter=delimiter,
                          encoding="utf-16-le", newline="\r\n")
        path.write_bytes(b"\xff\xfe" + path.read_bytes())
    else:
        path = write_text(tmp_path / "u.csv", cells(frame), delimiter=delimiter,
                          encoding=encoding)
    dataset = DatasetConfig(name="treatments", path=path, encoding=CSV_ENCODINGS[config],
                            delimiter=delimiter)
    assert_same(read_all(dataset), reference)
    if encoding == "utf-8":  # the delimiter is found from the header line too
        assert_same(read_all(replace(dataset, delimiter=None)), reference)


def test_utf8_byte_order_mark(tmp_path: Path, frame: pd.DataFrame,
                              reference: list[np.ndarray]) -> None:
    path = write_text(tmp_path / "bom.csv", cells(frame), newline="\r\n", bom=True)
    assert_same(read_all(DatasetConfig(name="treatments", path=path)), reference)


def test_no_header_line_with_columns(tmp_path: Path, frame: pd.DataFrame,
                                     reference: list[np.ndarray]) -> None:
    path = write_text(tmp_path / "bare.csv", cells(frame, comma=True), delimiter=";",
                      encoding="cp1252", newline="\r\n", trailing=";", header=None)
    dataset = DatasetConfig(name="treatments", path=path, encoding="windows-1252",
                            delimiter=";", decimal=",", header=False, columns=COLUMNS)
    assert_same(read_all(dataset), reference)


def test_quoted_fields_with_delimiters_and_line_breaks(tmp_path: Path) -> None:
    path = tmp_path / "quoted.csv"
    path.write_bytes('pseudonym;place;product;cycles\r\n'
                     'p1;"Curaçao; ""oost""";osimertinib;2\r\n'
                     'p2;"hôpital\nnord";durvalumab;3;\r\n'
                     'p3;plain;durvalumab;4\n'.encode("cp1252"))
    dataset = DatasetConfig(name="treatments", path=path, encoding="cp1252", delimiter=";")
    req = TableRequest(party="hospital_a", dataset="treatments", group_by=("place",),
                       categories=(("place", ('Curaçao; "oost"', "hôpital\nnord", "plain")),),
                       measure=Measure("sum", "cycles"))
    assert compute_local_table(dataset, req).values.tolist() == [2, 3, 4]


def test_header_only_file_is_a_table_of_zeros(tmp_path: Path) -> None:
    path = write_text(tmp_path / "h.csv", [], delimiter=";", encoding="cp1252",
                      newline="\r\n", trailing=";")
    dataset = DatasetConfig(name="treatments", path=path, encoding="cp1252", delimiter=";")
    got = compute_local_table(dataset, table_request(Measure("sum", "cycles")))
    assert not got.values.any() and not got.rows.any()


def test_no_copy_is_left_behind(tmp_path: Path, frame: pd.DataFrame, monkeypatch) -> None:
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    read_all(dutch(tmp_path, frame))
    assert not list((tmp_path / "tmp").iterdir())


# --- files that cannot be read: fixed words, nothing from the file -------------------------


def fails(dataset: DatasetConfig, caplog: pytest.LogCaptureFixture,
          measure: Measure = Measure("count")) -> str:
    with caplog.at_level(logging.DEBUG), pytest.raises(DataError) as info:
        compute_local_table(dataset, table_request(measure))
    message = str(info.value)
    assert message.startswith("hospital_a: dataset 'treatments': cannot read the file")
    for text in (message, caplog.text):
        assert SENTINEL not in text and "Cura" not in text and "osimertinib" not in text
    # The coordinator gets no line number nor field count (they tell how many rows come
    # before a bad one); the party's log has the same words with them.
    assert not re.search(r"line \d|\d+ fields", message), message
    logged = [r.getMessage() for r in caplog.records if "cannot read the file" in r.getMessage()]
    assert logged
    reason = logged[-1].split("cannot read the file: ", 1)[1].rsplit(" (", 1)[0]
    return f"hospital_a: dataset 'treatments': cannot read the file: {reason}"


def bad_lines(tmp_path: Path, bad: str, encoding: str = "utf-8", *, at: int = 4,
              delimiter: str = ",", name: str = "bad.csv") -> Path:
    rows = [delimiter.join(r) for r in cells(make_frame(n=8).assign(place="plain"))]
    rows[at - 2] = bad  # line `at` of the file (the header is line 1)
    path = tmp_path / name
    path.write_bytes(("\n".join([delimiter.join(COLUMNS), *rows]) + "\n").encode(encoding))
    return path


def test_windows_1252_read_as_utf8(tmp_path: Path, caplog) -> None:
    path = bad_lines(tmp_path, f"p1,Curaçao {SENTINEL},osimertinib,1,2,0.5", "cp1252", at=3)
    message = fails(DatasetConfig(name="treatments", path=path), caplog)
    assert message.endswith("cannot read the file: it is not valid UTF-8 (line 3); set "
                            "encoding in [datasets.treatments] of party.toml")


def test_undefined_windows_1252_byte(tmp_path: Path, caplog) -> None:
    path = bad_lines(tmp_path, f"p1,{SENTINEL}\x81,osimertinib,1,2,0.5", "latin-1", at=6)
    message = fails(DatasetConfig(name="treatments", path=path, encoding="windows-1252"),
                    caplog)
    assert "it is not valid Windows-1252 (line 6)" in message


def test_utf16_that_is_not(tmp_path: Path, caplog) -> None:
    path = tmp_path / "odd.csv"
    path.write_bytes("pseudonym,place\n".encode("utf-16") + b"\x00\xdc" + SENTINEL.encode())
    message = fails(DatasetConfig(name="treatments", path=path, encoding="utf-16"), caplog)
    assert "it is not valid UTF-16; set encoding in [datasets.treatments]" in message


def test_utf8_byte_order_mark_with_another_encoding(tmp_path: Path, caplog) -> None:
    path = write_text(tmp_path / "bom.csv", [[SENTINEL] * 6], bom=True)
    message = fails(DatasetConfig(name="treatments", path=path, encoding="latin-1"), caplog)
    assert "UTF-8 byte order mark, so it is UTF-8 text, not Latin-1" in message


@pytest.mark.parametrize("bad,found", [(f"p1,{SENTINEL},osimertinib,1,2,0.5,9", 7),
                                       (f"p1,{SENTINEL},osimertinib", 3)])
def test_wrong_number_of_fields(tmp_path: Path, caplog, bad: str, found: int) -> None:
    message = fails(DatasetConfig(name="treatments", path=bad_lines(tmp_path, bad, at=5)),
                    caplog)
    assert message.endswith(f"cannot read the file: line 5 has {found} fields where the header "
                            "has 6 (check delimiter in [datasets.treatments] of party.toml)")


def test_wrong_delimiter(tmp_path: Path, frame: pd.DataFrame, caplog) -> None:
    dataset = replace(dutch(tmp_path, frame), delimiter=",", decimal=".")
    message = fails(dataset, caplog)
    assert re.search(r"line 2 has \d+ fields where the header has 1 \(check delimiter", message)


def test_fields_beyond_the_columns_list(tmp_path: Path, caplog) -> None:
    path = bad_lines(tmp_path, f"p1,{SENTINEL},osimertinib,1,2,0.5,9", at=2)
    dataset = DatasetConfig(name="treatments", path=path, header=False, columns=COLUMNS)
    assert "line 2 has 7 fields where columns has 6" in fails(dataset, caplog)


def test_a_quote_never_closed(tmp_path: Path, caplog) -> None:
    path = bad_lines(tmp_path, f'p1,"{SENTINEL},osimertinib,1,2,0.5', at=4)
    message = fails(DatasetConfig(name="treatments", path=path), caplog)
    assert "line 4 has a quote character out of place, or a quoted field that is never" \
        in message


def test_carriage_returns_alone(tmp_path: Path, caplog) -> None:
    path = tmp_path / "mac.csv"
    path.write_bytes(f"pseudonym,place\rp1,{SENTINEL}\r".encode())
    message = fails(DatasetConfig(name="treatments", path=path), caplog)
    assert "line 1 has a carriage return without a line feed" in message


@pytest.mark.parametrize("bad,limit", [(",".join([SENTINEL] * 200_000), "1 MiB"),
                                       (SENTINEL * 30_000, "128 KiB per field")])
def test_a_line_too_long(tmp_path: Path, caplog, bad: str, limit: str) -> None:
    path = bad_lines(tmp_path, bad, at=3)
    message = fails(DatasetConfig(name="treatments", path=path), caplog)
    assert f"line 3 is longer than this reader allows ({limit}): is it a CSV file?" in message


def test_no_header_line(tmp_path: Path, caplog) -> None:
    path = tmp_path / "blank.csv"
    path.write_bytes(b"\r\n\r\n")
    message = fails(DatasetConfig(name="treatments", path=path), caplog)
    assert "it has no header line (a file without one needs header = false and columns in " \
           "[datasets.treatments] of party.toml)" in message


# DuckDB's own errors (the OMOP folders' tables, or anything the line check lets through):
# most quote a line of the file, which the classified words must not.
ROW = SENTINEL.encode() + b",1\n"
ENGINE_CASES = [  # file body, read_csv options, whether DuckDB quotes the file, the words
    ("unicode", b"a,b\n" + ROW * 30_000 + SENTINEL.encode() + b"\xe7,2\n", "", True,
     "it is not valid UTF-8 (line 30002)"),
    ("columns", b"a,b\n" + ROW * 30_000 + SENTINEL.encode() + b",1,2\n", ", delim=','", True,
     "line 30002 has 3 fields where the header has 2 (check delimiter in [datasets."),
    ("conversion", b"a,dose\nx,1\n" + SENTINEL.encode() + b",12;5\n",
     ", types={'dose': 'INTEGER'}", True,
     "line 3: a value in column 'dose' cannot be read as INTEGER"),
    ("quote", b"a,b\n" + ROW * 30_000 + b'"' + ROW + b"x,2\n", ", delim=',', quote='\"'", True,
     "line 30002 has a quote character out of place, or a quoted field that is never closed"),
    ("sniffing", b"a,b,c\n" + b"x,y,1\n" * 3 + SENTINEL.encode() + b",y,1,5\nx,y,1\n",
     ", sample_size=-1, delim=',', quote='\"'", False, "the engine cannot tell its layout"),
    ("missing", None, "", False, "a file it needs is missing"),
]


@pytest.mark.parametrize("case,body,options,quoted,words", ENGINE_CASES,
                         ids=[c[0] for c in ENGINE_CASES])
def test_engine_errors_are_classified(tmp_path: Path, caplog, case: str, body: bytes | None,
                                      options: str, quoted: bool, words: str) -> None:
    path = tmp_path / "engine.csv"
    if body is not None:
        path.write_bytes(body)
    with pytest.raises(duckdb.Error) as info:
        duckdb.connect().execute(f"SELECT * FROM read_csv('{path}', header=true{options})"
                                 ).fetchall()
    assert (SENTINEL in str(info.value)) == quoted  # what the engine's own message holds
    dataset = DatasetConfig(name="treatments", path=path)
    with caplog.at_level(logging.DEBUG):
        err = file_error(table_request(Measure("count")), dataset, info.value)
    assert "cannot read the file: " in str(err) and not re.search(r"line \d", str(err))
    assert words in caplog.text and type(info.value).__name__ in caplog.text
    for text in (str(err), caplog.text):
        assert SENTINEL not in text and "Original Line" not in text


def test_an_unclassified_engine_error_logs_no_quoted_text(caplog) -> None:
    exc = duckdb.InvalidInputException(f'Something new: "{SENTINEL}"\nOriginal Line: {SENTINEL}')
    with caplog.at_level(logging.DEBUG):
        err = file_error(table_request(Measure("count")),
                         DatasetConfig(name="treatments", path=Path("t.csv")), exc)
    assert "cannot read the file (InvalidInputException;" in str(err)
    assert "Something new" in caplog.text
    assert SENTINEL not in caplog.text and SENTINEL not in str(err)

