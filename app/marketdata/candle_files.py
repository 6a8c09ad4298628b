"""Candle files: find `binance_<SYMBOL>_<TF>.csv[.gz]`, parse and validate them into series, exactly."""

from __future__ import annotations

import gzip
import io
import re
import zlib
from collections.abc import Iterable, Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path

import numpy as np
import pandas as pd

from app.domain.errors import DataError
from app.domain.values import Timeframe
from app.marketdata.resampling import complete_from_5m, resample
from app.marketdata.series import CandleArrays, CandleSeries, TextSeries

HEADER = "open_time_ms,open,high,low,close,volume"
COLUMNS = tuple(HEADER.split(","))
FILE_PATTERN = re.compile(r"^binance_(?P<symbol>[A-Z0-9]+)_(?P<tf>5m|15m|1h)\.csv(?P<gz>\.gz)?$")


def discover_files(directory: Path, symbols: Sequence[str] | None) -> dict[tuple[str, Timeframe], Path]:
    """The file of each (symbol, timeframe) in `directory` (all symbols, or those asked for: each must have one)."""
    if not directory.is_dir():
        raise DataError(f"candle directory {directory} does not exist")
    wanted = {s.upper() for s in symbols} if symbols is not None else None
    files: dict[tuple[str, Timeframe], Path] = {}
    for path in sorted(directory.iterdir()):
        match = FILE_PATTERN.match(path.name)
        if match is None or (wanted is not None and match["symbol"] not in wanted):
            continue
        key = (match["symbol"], Timeframe(match["tf"]))
        if key not in files or match["gz"]:  # the .csv.gz wins over a same-named plain .csv
            files[key] = path
    missing = sorted((wanted or set()) - {symbol for symbol, _ in files})
    if missing:
        raise DataError(f"no candle files for {', '.join(missing)} in {directory}")
    return files


def load_symbol(symbol: str, files: dict[tuple[str, Timeframe], Path]) -> dict[tuple[str, Timeframe], CandleSeries]:
    """One symbol's series: each file read, and 15m/1h resampled from 5m wherever their file has no candle (all
    of it when the file is absent; before, after and inside the gaps of a file that covers less than the 5m)."""
    loaded: dict[tuple[str, Timeframe], CandleSeries] = {}
    for timeframe in Timeframe:
        path = files.get((symbol, timeframe))
        if path is not None:
            loaded[(symbol, timeframe)] = read_candle_file(path, timeframe)
    five = loaded.get((symbol, Timeframe.M5))
    if five is not None:
        for timeframe in (Timeframe.M15, Timeframe.H1):
            own = loaded.get((symbol, timeframe))
            loaded[(symbol, timeframe)] = resample(five, timeframe) if own is None else complete_from_5m(
                own, five, timeframe)
    return loaded


def read_candle_file(path: Path, timeframe: Timeframe) -> TextSeries:
    """Parse and validate one file; any problem raises DataError naming the file and the line."""
    text = _read_bytes(path)
    header_end = text.find(b"\n")
    header = text[: header_end if header_end >= 0 else len(text)].decode("ascii", "replace").strip()
    if header != HEADER:
        raise DataError(f"{path}: line 1: bad header {header!r}, expected {HEADER!r}")
    starts, ends = _line_bounds(text, header_end)
    arrays = _parse_columns(path, text, header_end)
    if len(arrays) != len(starts):
        raise DataError(f"{path}: {_diagnose_rows(text)}")
    problem = _first_problem(arrays, timeframe)
    if problem is not None:
        raise DataError(f"{path}: {problem}")
    short = _parsed_exactly(text, header_end)
    if not short:
        arrays = _decimal_columns(text, starts, ends)
    return TextSeries(arrays, text, starts, ends, short_decimals=short)


def _parsed_exactly(text: bytes, header_end: int) -> bool:
    """Whether the C parser gave float() of each field's Decimal, as the live path converts klines.

    It does when every field has at most 15 digits and no exponent: the digits then make an exact integer
    and one division by an exact power of ten rounds correctly, as float() does.
    """
    if text.find(b"e", header_end + 1) >= 0 or text.find(b"E", header_end + 1) >= 0:
        return False
    body = np.frombuffer(text, np.uint8)[header_end + 1 :]
    separators = np.flatnonzero((body == ord(",")) | (body == ord("\n")))
    return len(separators) == 0 or int(np.diff(np.r_[-1, separators]).max()) <= 16


def _decimal_columns(text: bytes, starts: np.ndarray, ends: np.ndarray) -> CandleArrays:
    """The slow exact parse (float() of each Decimal), for files with fields too long for the fast one."""
    rows = [text[a:b].decode("ascii").strip().split(",") for a, b in zip(starts.tolist(), ends.tolist(), strict=True)]
    times = np.fromiter((int(row[0]) for row in rows), dtype=np.int64, count=len(rows))
    columns = (np.fromiter((float(Decimal(row[i])) for row in rows), np.float64, len(rows)) for i in range(1, 6))
    return CandleArrays(times, *columns)


def _read_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
        return gzip.decompress(raw) if path.name.endswith(".gz") else raw
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path}: cannot read: {e}") from e


def _line_bounds(text: bytes, header_end: int) -> tuple[np.ndarray, np.ndarray]:
    """Start and end offsets of each data row (rows are the lines after the header)."""
    if header_end < 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    newlines = np.flatnonzero(np.frombuffer(text, np.uint8) == 10).astype(np.int64)
    if newlines[-1] != len(text) - 1:
        newlines = np.r_[newlines, len(text)]
    return newlines[:-1] + 1, newlines[1:]


def _parse_columns(path: Path, text: bytes, header_end: int) -> CandleArrays:
    """Fast C parser; on anything odd, a row-by-row pass finds the line and says what is wrong."""
    if header_end < 0 or header_end == len(text) - 1:
        empty_floats = np.zeros(0, np.float64)
        return CandleArrays(np.zeros(0, np.int64), *(empty_floats,) * 5)
    try:
        frame = pd.read_csv(io.BytesIO(text), dtype=np.float64, skip_blank_lines=False, engine="c")
    except (ValueError, pd.errors.ParserError) as e:
        raise DataError(f"{path}: {_diagnose_rows(text) or e}") from e
    values = frame.to_numpy(np.float64)
    if values.shape[1] != 6 or not np.isfinite(values).all():
        raise DataError(f"{path}: {_diagnose_rows(text) or 'non-numeric or missing values'}")
    times = values[:, 0].astype(np.int64)
    if not np.array_equal(times.astype(np.float64), values[:, 0]):
        raise DataError(f"{path}: {_diagnose_rows(text) or 'open_time_ms is not an integer'}")
    return CandleArrays(times, *(np.ascontiguousarray(values[:, i]) for i in range(1, 6)))


def _diagnose_rows(text: bytes) -> str:
    """The first row that does not hold six numbers, as `line N: problem`."""
    for number, line in _numbered_rows(text):
        problem = _row_problem(line)
        if problem is not None:
            return f"line {number}: {problem}"
    return ""


def _numbered_rows(text: bytes) -> Iterable[tuple[int, str]]:
    lines = text.decode("ascii", "replace").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return enumerate(lines[1:], start=2)


def _row_problem(line: str) -> str | None:
    fields = line.strip().split(",")
    if len(fields) != len(COLUMNS):
        return f"wrong column count: expected {len(COLUMNS)}, found {len(fields)} in {line.strip()!r}"
    if not fields[0].strip().isdigit():
        return f"non-numeric value {fields[0]!r} in column open_time_ms"
    for name, value in zip(COLUMNS[1:], fields[1:], strict=True):
        try:
            if Decimal(value).is_finite():
                continue
        except InvalidOperation:
            pass
        return f"non-numeric value {value!r} in column {name}"
    return None


def _first_problem(a: CandleArrays, timeframe: Timeframe) -> str | None:
    """Vectorised row checks; the message names the first offending line (the header is line 1)."""
    times = a.open_time_ms
    steps = np.diff(times)
    checks: list[tuple[np.ndarray, str]] = [
        (times % timeframe.ms != 0, "open time {t} not aligned to " + str(timeframe)),
        (np.r_[False, steps == 0], "duplicate open time {t}"),
        (np.r_[False, steps < 0], "open time {t} not ascending (earlier than the previous row)"),
        (a.high < a.low, "high {h} below low {l}"),
        (np.minimum(a.open, a.close) < a.low, "open or close below low {l}"),
        (np.maximum(a.open, a.close) > a.high, "open or close above high {h}"),
        (np.minimum(a.open, a.low) <= 0, "non-positive price"),
        (a.volume < 0, "negative volume"),
    ]
    found = [(int(np.argmax(mask)), message) for mask, message in checks if mask.any()]
    if not found:
        return None
    row, message = min(found, key=lambda item: item[0])
    detail = message.format(t=int(times[row]), h=a.high[row], l=a.low[row])
    return f"line {row + 2}: {detail}"
