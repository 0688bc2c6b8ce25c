"""Reading batch files: what is rejected outright, and how records are numbered."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from finflow_core.errors import BatchRejected
from finflow_core.lending.config import Config
from finflow_core.lending.intake.reader import open_batch
from finflow_core.lending.intake.sources import iter_chunks, open_source
from finflow_core.lending.intake.validation import validate_batch
from finflow_core.lending.synthetic import generate_applications


@pytest.fixture(scope="module")
def sample() -> pd.DataFrame:
    return generate_applications(12, seed=31).drop(columns="default")


@pytest.fixture(scope="module")
def sample_csv(sample: pd.DataFrame) -> str:
    return sample.to_csv(index=False)


def _rejected(source: bytes, config: Config) -> BatchRejected:
    with pytest.raises(BatchRejected) as exc:
        validate_batch(source, config, name="week.csv")
    assert exc.value.exit_code == 4
    assert exc.value.message.startswith("week.csv: ")
    assert exc.value.to_dict()["reason"] == exc.value.reason
    return exc.value


def _xlsx_bytes() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("xl/workbook.xml", "<workbook/>")
    return buf.getvalue()


def test_empty_file_is_rejected(config: Config) -> None:
    for content in (b"", b"\n\n  \r\n", b"\xef\xbb\xbf"):
        err = _rejected(content, config)
        assert err.reason == "empty"
        assert "empty" in err.message


def test_header_only_is_rejected(config: Config, sample_csv: str) -> None:
    header = sample_csv.splitlines()[0]
    for content in (header, header + "\n", header + "\n\n\n"):
        err = _rejected(content.encode(), config)
        assert err.reason == "no_rows"
        assert "no applications" in err.message


@pytest.mark.parametrize(
    ("content", "what"),
    [
        pytest.param(_xlsx_bytes(), "Excel", id="xlsx"),
        pytest.param(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 64, "old Excel", id="xls"),
        pytest.param(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n", "PDF", id="pdf"),
        pytest.param(b"application_id,loan\x00_amount\nA,1\n", "NUL", id="nul-bytes"),
        pytest.param(b"\x89PNG\r\n\x1a\n\x00\x00", "image", id="png"),
    ],
)
def test_binary_files_are_not_csv(config: Config, content: bytes, what: str) -> None:
    err = _rejected(content, config)
    assert err.reason == "not_csv"
    assert what in err.message


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(json.dumps({"application_id": "A-1", "loan_amount": 5000}), id="object"),
        pytest.param(json.dumps([{"application_id": "A-1", "loan_amount": 5000}], indent=2),
                     id="array"),
        pytest.param("<!DOCTYPE html>\n<html><body><table><tr><td>1</td></tr></table></body></html>", id="html"),
    ],
)
def test_json_or_html_text_is_not_csv(config: Config, content: str) -> None:
    err = _rejected(content.encode(), config)
    assert err.reason == "not_csv"
    assert "not a CSV file" in err.message


def test_cp1252_file_is_a_wrong_encoding(config: Config, sample_csv: str) -> None:
    text = sample_csv.replace("retail", "détail", 1)
    err = _rejected(text.encode("cp1252"), config)
    assert err.reason == "encoding"
    assert "UTF-8" in err.message
    offset = text.encode("cp1252").index(b"\xe9")
    assert err.details["offset"] == offset
    assert f"offset {offset}" in err.message


def test_utf16_file_is_a_wrong_encoding(config: Config, sample_csv: str) -> None:
    err = _rejected(sample_csv.encode("utf-16"), config)
    assert err.reason == "encoding"
    assert "UTF-8" in err.message


def test_missing_required_columns_are_named(config: Config, sample: pd.DataFrame) -> None:
    content = sample.drop(columns=["credit_score", "region"]).to_csv(index=False).encode()
    err = _rejected(content, config)
    assert err.reason == "missing_columns"
    assert err.details["missing"] == ["credit_score", "region"]
    assert "credit_score" in err.message and "region" in err.message
    assert "loan_amount" not in err.message.split("missing required column(s)")[1]


def test_semicolon_separated_file_gets_a_hint(config: Config, sample: pd.DataFrame) -> None:
    content = sample.to_csv(index=False, sep=";").encode()
    err = _rejected(content, config)
    assert err.reason == "missing_columns"
    assert "';'" in err.message and "comma-separated" in err.message


def test_duplicate_header_is_rejected(config: Config, sample_csv: str) -> None:
    lines = sample_csv.splitlines()
    content = "\n".join([lines[0] + ",region", *[ln + ",west" for ln in lines[1:]]]) + "\n"
    err = _rejected(content.encode(), config)
    assert err.reason == "duplicate_columns"
    assert err.details["column"] == "region"
    assert "'region' appears twice" in err.message


def test_a_header_of_empty_names_is_named_as_such(config: Config, sample_csv: str) -> None:
    """',,,,,' was "the first line is blank"; two nameless columns were "column '' appears
    twice"."""
    rows = sample_csv.splitlines()[1:]
    err = _rejected(("," * 14 + "\n" + "\n".join(rows) + "\n").encode(), config)
    assert "the first line holds 15 empty names" in err.message
    header = sample_csv.splitlines()[0]
    content = "\n".join([header + ",,", *[r + ",a,b" for r in rows]]) + "\n"
    err = _rejected(content.encode(), config)
    assert "columns without a name" in err.message and "''" not in err.message
    assert _rejected(b"\n\n" + sample_csv.encode(), config).message.endswith(
        "the first line is blank; it must name the columns")


def test_missing_file_is_rejected(config: Config, tmp_path: Path) -> None:
    with pytest.raises(BatchRejected) as exc:
        open_batch(tmp_path / "absent.csv", config)
    assert exc.value.reason == "not_found"


def test_target_required_for_training(config: Config, sample: pd.DataFrame) -> None:
    with pytest.raises(BatchRejected) as exc:
        open_batch(sample.to_csv(index=False).encode(), config, require_target=True)
    assert exc.value.details["missing"] == ["default"]


def test_extra_columns_are_ignored_with_a_warning(config: Config) -> None:
    df = generate_applications(20, seed=32, with_truth=True)
    report = validate_batch(df.to_csv(index=False).encode(), config)
    assert report.batch.ignored_columns == ("default", "true_pd")
    assert report.warnings and "default" in report.warnings[0] and "true_pd" in report.warnings[0]
    assert "default" not in report.valid.columns and "true_pd" not in report.valid.columns
    assert report.rows_valid == 20


def test_file_path_and_bytes_read_the_same(
    config: Config, sample_csv: str, tmp_path: Path
) -> None:
    path = tmp_path / "week-02.csv"
    path.write_text(sample_csv)
    from_path = open_batch(path, config)
    from_bytes = open_batch(sample_csv.encode(), config)
    assert from_path.name == "week-02.csv"
    assert from_bytes.name == "upload.csv"
    assert from_path.sha256 == from_bytes.sha256
    assert from_path.batch_id == f"B-{from_path.sha256[:16]}"
    assert from_path.size == len(sample_csv.encode())
    assert from_path.expected_rows == 12  # the records, not the header
    pd.testing.assert_frame_equal(
        validate_batch(from_path, config).valid, validate_batch(from_bytes, config).valid
    )


def test_utf8_bom_and_crlf_are_accepted(config: Config, sample: pd.DataFrame) -> None:
    content = b"\xef\xbb\xbf" + sample.to_csv(index=False, lineterminator="\r\n").encode()
    report = validate_batch(content, config)
    assert report.rows_valid == len(sample)
    assert report.valid["application_id"].tolist() == sample["application_id"].tolist()


def test_row_numbers_skip_blank_lines_and_span_quoted_newlines(
    config: Config, sample: pd.DataFrame
) -> None:
    df = sample.head(6).astype(object).copy()
    df.loc[3, "application_id"] = "ID-WITH\nA LINE BREAK"
    lines = df.to_csv(index=False).splitlines(keepends=True)
    # lines: 0 header, 1-3 records 1-3, 4-5 record 4 (quoted newline), 6-7 records 5-6
    text = "".join([lines[0], lines[1], "\n", lines[2], "   \n", lines[3], *lines[4:6], "\n",
                    *lines[6:]])
    batch = open_batch(text.encode(), config)
    (chunk,) = list(iter_chunks(batch))
    assert chunk.row_numbers == [1, 2, 3, 4, 5, 6]
    # physical lines: header 1, rec1 2, blank 3, rec2 4, blank 5, rec3 6, rec4 7-8, blank 9, ...
    assert chunk.lines == [2, 4, 6, 7, 10, 11]
    report = validate_batch(text.encode(), config)
    # the id with a line break is quarantined (rule id_characters) under its own row and line
    assert report.row_numbers.tolist() == [1, 2, 3, 5, 6]
    assert report.quarantined[["row_number", "line"]].values.tolist() == [[4, 7]]
    assert report.issues["rule"].tolist() == ["id_characters"]
    assert report.valid["application_id"].tolist() == df["application_id"].drop(index=3).tolist()


def test_row_numbers_of_quarantined_rows(config: Config, sample: pd.DataFrame) -> None:
    df = sample.head(5).astype(object).copy()
    df.loc[4, "credit_score"] = "high"
    text = df.to_csv(index=False).replace("\n", "\n\n", 2)  # blank lines before records 1 and 2
    report = validate_batch(text.encode(), config)
    assert report.quarantined["row_number"].tolist() == [5]
    assert report.issues["row_number"].tolist() == [5]
    assert report.issues["line"].tolist() == [8]


def test_chunks_cover_every_record_once(config: Config) -> None:
    df = generate_applications(50, seed=33)
    batch = open_batch(df.to_csv(index=False).encode(), config)
    chunks = list(iter_chunks(batch, chunk_rows=7))
    assert [len(c.frame) for c in chunks] == [7] * 7 + [1]
    numbers = [n for c in chunks for n in c.row_numbers]
    assert numbers == list(range(1, 51))
    combined = pd.concat([c.frame for c in chunks], ignore_index=True)
    assert combined["application_id"].tolist() == df["application_id"].tolist()
    # cells stay exactly as written
    assert combined["loan_amount"].tolist() == [repr(v) for v in df["loan_amount"]]


def test_header_cells_are_trimmed(config: Config, sample_csv: str) -> None:
    lines = sample_csv.splitlines()
    header = ", ".join(lines[0].split(","))
    report = validate_batch(("\n".join([header, *lines[1:]]) + "\n").encode(), config)
    assert report.rows_valid == len(lines) - 1


def test_wrong_number_of_cells_is_kept_for_quarantine(config: Config, sample_csv: str) -> None:
    lines = sample_csv.splitlines()
    lines[2] = lines[2] + ",extra"
    lines[4] = ",".join(lines[4].split(",")[:-2])
    batch = open_batch(("\n".join(lines) + "\n").encode(), config)
    (chunk,) = list(iter_chunks(batch))
    assert [(rn, line) for rn, line, _ in chunk.misshapen] == [(2, 3), (4, 5)]
    assert len(chunk.frame) == len(lines) - 3


@pytest.mark.parametrize("trailing_newline", [True, False])
def test_unclosed_quote_is_rejected_not_swallowed(config: Config, sample_csv: str,
                                                  trailing_newline: bool) -> None:
    lines = sample_csv.splitlines()
    lines[4] = '"' + lines[4]  # record 4 (line 5) opens a quote that never closes
    text = "\n".join(lines) + ("\n" if trailing_newline else "")
    err = _rejected(text.encode(), config)
    assert err.reason == "unclosed_quote"
    assert err.details["line"] == 5
    assert "line 5 is never closed" in err.message


def test_closed_quotes_with_line_breaks_at_a_chunk_end_are_fine(config: Config,
                                                                sample: pd.DataFrame) -> None:
    df = sample.astype(object).copy()
    df.loc[6, "application_id"] = 'ID "quoted",\nand broken'
    df.loc[11, "application_id"] = "LAST\n"
    batch = open_batch(df.to_csv(index=False).encode(), config)
    chunks = list(iter_chunks(batch, chunk_rows=7))
    assert [c.row_numbers for c in chunks] == [list(range(1, 8)), list(range(8, 13))]
    assert chunks[0].frame["application_id"].iloc[6] == 'ID "quoted",\nand broken'
    assert chunks[1].frame["application_id"].iloc[-1] == "LAST\n"


# -- limits before work --------------------------------------------------------------------------

def test_a_header_far_wider_than_the_config_is_rejected_before_any_row_is_read(
    config: Config, sample_csv: str,
) -> None:
    """The 385 KB file that once took 3.6 GB: 10,000 header columns over 16-cell rows."""
    import resource
    import time

    header = ",".join(f"c{i}" for i in range(10_000))
    rows = "\n".join(",".join(["12345"] * 16) for _ in range(3_500))
    content = (header + "\n" + rows + "\n").encode()
    assert 250_000 < len(content) < 500_000
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    err = _rejected(content, config)
    assert time.perf_counter() - started < 0.5
    assert err.reason == "too_many_columns" and "10,000 columns" in err.message
    assert err.details["allowed"] == 2 * len(config.columns) + 50
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50_000  # KB: < 50 MB more
    # a normal file with a few extra columns is still fine
    extra = sample_csv.replace("\n", ",x,y\n", 1).replace("\n", ",1,2\n")
    assert validate_batch(extra.encode(), config).rows_in == 12


def test_a_file_over_the_size_limit_is_rejected_before_it_is_read(
    small_raw: dict, sample_csv: str, tmp_path: Path,
) -> None:
    import copy

    from finflow_core.lending.config import parse_config

    raw = copy.deepcopy(small_raw)
    raw["limits"] = {"max_file_mb": 0.001, "max_columns": 40}  # about 1 KB
    tight = parse_config(raw)
    path = tmp_path / "big.csv"
    path.write_text(sample_csv * 3)
    for source in (path, path.read_bytes()):
        with pytest.raises(BatchRejected) as exc:
            open_batch(source, tight, name="week.csv")
        assert exc.value.reason == "too_large" and "max_file_mb" in exc.value.message
    parquet = tmp_path / "big.parquet"
    pd.read_csv(io.StringIO(sample_csv * 3), dtype=str).to_parquet(parquet)
    assert parquet.stat().st_size > 1100
    for source in (parquet, parquet.read_bytes()):  # a Parquet file: the same limit
        with pytest.raises(BatchRejected) as exc:
            open_source(source, tight, name="week.parquet")
        assert exc.value.reason == "too_large"
    assert tight.limits.columns_allowed(len(tight.columns)) == 40


def test_optional_columns_count_as_used(config: Config, sample: pd.DataFrame) -> None:
    optional = [c.name for c in config.optional_columns]
    df = sample.copy()
    for name in optional:
        df[name] = ""
    df["notes"] = "x"
    batch = open_batch(df.to_csv(index=False).encode(), config, name="week.csv")
    assert set(optional) <= set(batch.used_columns)
    assert batch.ignored_columns == ("notes",)


# -- the quote-free fast path ----------------------------------------------------------------------

@pytest.mark.parametrize("chunk_rows", [1, 3, 50])
def test_the_quote_free_fast_path_reads_exactly_what_the_csv_module_reads(
    config: Config, sample_csv: str, chunk_rows: int,
) -> None:
    """Blank and whitespace lines, CRLF, a BOM, short and long rows, no final line break."""
    import dataclasses

    header, *rows = sample_csv.strip("\n").split("\n")
    lines = [header, rows[0], "", "   ", rows[1], "a,b,c", rows[2] + ",extra", "\t", rows[3], ",",
             *rows[4:9], "", rows[9]]
    for content in ("\ufeff" + "\r\n".join(lines) + "\r\n\r\n", "\n".join(lines)):
        batch = open_batch(content.encode(), config, name="week.csv")
        assert batch.plain
        fast = list(iter_chunks(batch, chunk_rows))
        slow = list(iter_chunks(dataclasses.replace(batch, plain=False), chunk_rows))
        assert len(fast) == len(slow) > 0
        for f, s in zip(fast, slow, strict=True):
            pd.testing.assert_frame_equal(f.frame, s.frame)
            assert (f.row_numbers, f.lines, f.misshapen) == (s.row_numbers, s.lines, s.misshapen)
        assert sum(len(c.misshapen) for c in fast) == 3  # "a,b,c", the extra cell, ","
        assert [r for c in fast for r in c.row_numbers][-1] == 12  # blank lines are no records


def test_quotes_or_a_lone_carriage_return_take_the_csv_module_path(config: Config, sample_csv: str) -> None:
    header, first, *rest = sample_csv.split("\n")
    quoted = "\n".join([header, '"' + first.replace(",", '",', 1), *rest])
    assert not open_batch(quoted.encode(), config, name="q.csv").plain
    lone_cr = "\n".join([header, first + "\r" + rest[0], *rest[1:]])
    assert not open_batch(lone_cr.encode(), config, name="cr.csv").plain
    assert open_batch(sample_csv.encode(), config, name="plain.csv").plain


@pytest.mark.parametrize("quoted", [True, False])
def test_a_cell_over_the_field_limit_is_rejected_on_both_paths(config: Config, sample_csv: str,
                                                               quoted: bool) -> None:
    """One huge unquoted cell was read, stored, summarised and printed in full (the quoted
    one was refused): both paths refuse it, naming its line."""
    from finflow_core.lending.intake.reader import MAX_FIELD

    header, first, *rest = sample_csv.strip("\n").split("\n")
    cells = rest[2].split(",")
    cells[header.split(",").index("industry")] = ('"{}"' if quoted else "{}").format(
        "x" * (MAX_FIELD + 1))
    text = "\n".join([header, first, rest[0], rest[1], ",".join(cells), *rest[3:]]) + "\n"
    assert open_batch(text.encode(), config, name="week.csv").plain is not quoted
    err = _rejected(text.encode(), config)
    assert err.reason == "not_csv"
    assert err.message == (f"week.csv: cannot read the CSV near line 5: field larger than field "
                           f"limit ({MAX_FIELD})")


def test_a_file_name_with_a_line_break_or_an_override_is_shown_on_one_line(
    config: Config, sample_csv: str, tmp_path: Path
) -> None:
    """The name is stored with the batch and starts every message about the file: a line
    break in it split `finflow batches list`'s line, U+202E reversed what followed."""
    path = tmp_path / "week\n49\u202e.csv"
    path.write_text(sample_csv, encoding="utf-8")
    assert open_batch(path, config).name == "week 49.csv"
    assert open_source(path, config).name == "week 49.csv"
    with pytest.raises(BatchRejected) as refused:
        open_batch(tmp_path / "gone\r\n.csv", config)
    assert "\n" not in refused.value.message and "\r" not in refused.value.message


def test_a_folder_or_a_device_is_named_as_such_not_as_a_missing_file(
    config: Config, tmp_path: Path
) -> None:
    with pytest.raises(BatchRejected, match="is a folder, not a file"):
        open_batch(tmp_path, config)
    with pytest.raises(BatchRejected, match="is a device, pipe or socket, not a file"):
        open_source(Path("/dev/zero"), config)
    with pytest.raises(BatchRejected, match="file not found"):
        open_batch(tmp_path / "gone.csv", config)


def test_chunks_of_no_rows_are_refused_not_streamed_for_ever(config: Config, sample_csv: str) -> None:
    from finflow_core.errors import InvalidInput

    batch = open_batch(sample_csv.encode(), config)
    with pytest.raises(InvalidInput, match="chunk_rows must be 1 or more"):
        next(iter_chunks(batch, 0))
