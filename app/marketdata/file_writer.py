"""Writes a data directory's files atomically: candle files merged with their rows, exchange_info.json by symbol."""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

import numpy as np

from app.domain.errors import DataError
from app.domain.values import Candle, Timeframe, format_decimal
from app.marketdata.candle_files import HEADER, read_candle_file
from app.marketdata.exchange_info import EXCHANGE_INFO_FILE, parse_exchange_info

_NEW_FILE_MODE = 0o644
_ROWS_PER_CHUNK = 10_000


def write_atomically(path: Path, chunks: Iterable[bytes], *, gzipped: bool = False) -> None:
    """Write `chunks` to a temporary file beside `path`, then rename it over `path`: a reader, or a run killed
    meanwhile, finds the old file or the new one, never a part of one. The temporary name (`.<name>.<random>.part`)
    is not one the candle store reads."""
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(descriptor, "wb") as raw:
            os.fchmod(raw.fileno(), path.stat().st_mode & 0o777 if path.exists() else _NEW_FILE_MODE)
            with _maybe_gzipped(raw, gzipped) as out:
                for chunk in chunks:
                    out.write(chunk)
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def _maybe_gzipped(raw: IO[bytes], gzipped: bool) -> Iterator[IO[bytes]]:
    if not gzipped:
        yield raw
        return
    # mtime 0 and no name: the same rows always give the same bytes (a resumed download equals a fresh one)
    with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as compressed:
        yield compressed  # type: ignore[misc]


def candle_row(candle: Candle) -> str:
    """One CSV row, numbers in their shortest exact decimal form (the exchange's "0.01634790" is 0.0163479)."""
    values = (candle.open, candle.high, candle.low, candle.close, candle.volume)
    return ",".join([str(candle.open_time_ms), *(format_decimal(v) for v in values)])


class CandleFile:
    """One symbol and timeframe in a data directory: the open times it holds, and new candles merged into it.

    It reads the `.csv.gz` file, else the plain `.csv` one (the store prefers the same), and always writes the
    `.csv.gz` one. Rows already there keep their text; a fetched candle at the same open time replaces its row.
    """

    def __init__(self, directory: Path, symbol: str, timeframe: Timeframe) -> None:
        self.symbol, self.timeframe = symbol, timeframe
        self.path = directory / f"binance_{symbol}_{timeframe.value}.csv.gz"
        self._rows: dict[int, str] | None = None

    def open_times(self) -> np.ndarray:
        """Ascending open times of the candles held (validated like the store reads them)."""
        if self._rows is not None:
            return np.fromiter(sorted(self._rows), dtype=np.int64, count=len(self._rows))
        source = self._source()
        if source is None:
            return np.zeros(0, np.int64)
        return read_candle_file(source, self.timeframe).arrays.open_time_ms

    def merge(self, candles: Sequence[Candle]) -> int:
        """Write the file with `candles` merged in; returns how many open times are new to it."""
        rows = self._loaded_rows()
        before = len(rows)
        rows.update((c.open_time_ms, candle_row(c)) for c in candles)
        write_atomically(self.path, _csv_chunks(rows), gzipped=True)
        return len(rows) - before

    def _source(self) -> Path | None:
        plain = self.path.with_suffix("")
        return self.path if self.path.exists() else plain if plain.exists() else None

    def _loaded_rows(self) -> dict[int, str]:
        if self._rows is None:
            self._rows = self._read_rows()
        return self._rows

    def _read_rows(self) -> dict[int, str]:
        source = self._source()
        if source is None:
            return {}
        times = read_candle_file(source, self.timeframe).arrays.open_time_ms  # a broken file stops the merge
        raw = source.read_bytes()
        text = gzip.decompress(raw) if source.suffix == ".gz" else raw
        lines = text.decode("ascii").splitlines()[1:]
        return dict(zip(times.tolist(), (line.strip() for line in lines), strict=True))


def _csv_chunks(rows: Mapping[int, str]) -> Iterator[bytes]:
    ordered = [rows[t] for t in sorted(rows)]
    yield (HEADER + "\n").encode("ascii")
    for start in range(0, len(ordered), _ROWS_PER_CHUNK):
        yield ("\n".join(ordered[start:start + _ROWS_PER_CHUNK]) + "\n").encode("ascii")


def _stored_exchange_info(path: Path) -> dict[str, Any]:
    """exchange_info.json as JSON (its symbols as stored, not parsed into rules), or {} when there is none."""
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(), parse_float=Decimal)
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: cannot read: {e}") from e
    symbols = data.get("symbols", []) if isinstance(data, dict) else None
    if not isinstance(symbols, list) or not all(isinstance(s, dict) and "symbol" in s for s in symbols):
        raise DataError(f"{path}: expected Binance's exchangeInfo: an object whose `symbols` lists objects "
                        "with a `symbol`")
    return data


def merge_exchange_info(directory: Path, fetched: Mapping[str, Any]) -> list[str]:
    """exchange_info.json updated with `fetched` (checked by the rules' parser first, so the file stays one the
    venues read): its symbols replace theirs, the others are kept. Returns the symbols the file now holds."""
    parse_exchange_info(fetched, origin="the exchange's exchangeInfo")
    path = directory / EXCHANGE_INFO_FILE
    existing = _stored_exchange_info(path)
    symbols = {s["symbol"]: s for s in existing.get("symbols", [])}
    symbols.update((s["symbol"], s) for s in fetched.get("symbols", []))
    merged = {**existing, **fetched, "symbols": [symbols[name] for name in sorted(symbols)]}
    # Binance sends rule values as strings; a bare fractional number, parsed exactly, would be written as a string
    text = json.dumps(merged, indent=2, default=str) + "\n"
    write_atomically(path, [text.encode()])
    return sorted(symbols)
