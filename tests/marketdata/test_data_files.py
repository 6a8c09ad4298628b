"""The data directory's writers: atomic replacement, candle rows merged as text, span arithmetic for resuming."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from app.domain.values import Candle, Timeframe
from app.marketdata.candle_files import HEADER
from app.marketdata.candles import CandleStore
from app.marketdata.file_writer import CandleFile, candle_row, write_atomically
from app.marketdata.spans import Span, align_up, holes, merged, subtract

STEP = Timeframe.M5.ms


def test_an_interrupted_write_leaves_the_old_file_and_nothing_else(tmp_path: Path) -> None:
    target = tmp_path / "binance_BTCUSDT_5m.csv.gz"
    write_atomically(target, [b"old rows\n"], gzipped=True)
    old = target.read_bytes()

    def failing() -> Iterator[bytes]:
        yield b"half of the new rows"
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomically(target, failing(), gzipped=True)
    assert target.read_bytes() == old
    assert [p.name for p in tmp_path.iterdir()] == [target.name]


def test_merged_candles_keep_the_rows_already_written_and_replace_a_plain_csv(tmp_path: Path) -> None:
    (tmp_path / "binance_BTCUSDT_5m.csv").write_text(f"{HEADER}\n{STEP},100.50,101,99,100.5,1.0\n")
    new = [Candle(0, Decimal("1.10"), Decimal("2.000"), Decimal("1"), Decimal("1.5"), Decimal("0E-8")),
           Candle(2 * STEP, Decimal("3"), Decimal("3"), Decimal("3"), Decimal("3"), Decimal("7"))]
    file = CandleFile(tmp_path, "BTCUSDT", Timeframe.M5)
    assert list(file.open_times()) == [STEP]
    assert file.merge(new) == 2
    assert candle_row(new[0]) == "0,1.1,2,1,1.5,0"  # the exchange's "0.00000000" is 0
    store = CandleStore.load(tmp_path)  # the .csv.gz wins over the .csv it now contains
    assert [c.open_time_ms for c in store.candles_between("BTCUSDT", Timeframe.M5, 0, 10 * STEP)] == [0, STEP, 2 * STEP]
    assert store.candles_between("BTCUSDT", Timeframe.M5, STEP, 2 * STEP)[0].open == Decimal("100.50")


def test_holes_and_what_is_left_to_fetch() -> None:
    times = [2 * STEP, 3 * STEP, 7 * STEP]
    assert holes(times, Span(0, 10 * STEP), STEP) == [Span(0, 2 * STEP), Span(4 * STEP, 7 * STEP),
                                                      Span(8 * STEP, 10 * STEP)]
    assert holes([], Span(0, 3 * STEP), STEP) == [Span(0, 3 * STEP)]
    assert holes(times, Span(2 * STEP, 4 * STEP), STEP) == []
    known_empty = [Span(4 * STEP, 7 * STEP), Span(9 * STEP, 20 * STEP)]
    assert subtract(holes(times, Span(0, 10 * STEP), STEP), known_empty) == [Span(0, 2 * STEP),
                                                                            Span(8 * STEP, 9 * STEP)]
    assert merged([Span(5, 9), Span(0, 5), Span(12, 13), Span(3, 4)]) == [Span(0, 9), Span(12, 13)]
    assert (align_up(STEP + 1, STEP), align_up(STEP, STEP)) == (2 * STEP, STEP)
