"""CandleStore: validation with file and line, closed-candle queries, resampling and gaps."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.domain.clock import ms_from_utc, utc_from_ms
from app.domain.errors import DataError
from app.domain.values import Candle, Timeframe
from app.marketdata.candle_files import HEADER
from app.marketdata.candles import CandleStore, Gap
from app.marketdata.resampling import _short_decimal_sums

SAMPLE_DIR = Path(__file__).resolve().parents[2] / "app" / "data" / "sample"
REAL_COARSE_DIR = Path(__file__).resolve().parent / "data"
T0 = datetime(2025, 1, 1, tzinfo=UTC)
T0_MS = ms_from_utc(T0)
M5 = Timeframe.M5.ms


def row(i: int, o: str = "100", h: str = "200", lo: str = "99", c: str = "100.5", v: str = "2") -> str:
    return f"{T0_MS + i * M5},{o},{h},{lo},{c},{v}"


def write(directory: Path, name: str, lines: list[str], header: str = HEADER) -> Path:
    path = directory / name
    text = "\n".join([header, *lines]) + "\n"
    path.write_bytes(gzip.compress(text.encode()) if name.endswith(".gz") else text.encode())
    return path


def test_closed_candles_never_include_a_candle_still_open(tmp_path: Path) -> None:
    write(tmp_path, "binance_BTCUSDT_5m.csv", [row(i, c=f"{100 + i}") for i in range(6)])
    store = CandleStore.load(tmp_path)
    until = T0 + timedelta(minutes=14, seconds=59)  # candle 2 (10:00-15:00) has not closed yet
    candles = store.closed_candles("BTCUSDT", Timeframe.M5, until, 10)
    assert [c.close for c in candles] == [Decimal("100"), Decimal("101")]
    assert store.price_at("BTCUSDT", T0 + timedelta(minutes=15)) == Decimal("102")
    assert store.closed_candles("BTCUSDT", Timeframe.M5, T0 + timedelta(minutes=30), 2)[0].open_time_ms == row_ms(4)


def row_ms(i: int) -> int:
    return T0_MS + i * M5


@given(present=st.sets(st.integers(0, 40), max_size=30),
       first=st.integers(-3, 45), moves=st.lists(st.sampled_from([1, 1, 1, 0, 2, 5, -1, -7]), max_size=60))
def test_window_lookups_in_any_order_find_what_a_search_finds(tmp_path_factory: pytest.TempPathFactory,
                                                              present: set[int], first: int, moves: list[int]) -> None:
    """Windows are found from the previous answer first (cycles ask in time order); any order of asking, across
    gaps, before the first and after the last candle, gives what a search of the open times gives, for windows and
    for ranges of candles alike."""
    directory = tmp_path_factory.mktemp("series")
    write(directory, "binance_BTCUSDT_5m.csv", [row(i, c=f"{100 + i}") for i in sorted(present)])
    store = CandleStore.load(directory)
    opens = np.array([row_ms(i) for i in sorted(present)], dtype=np.int64)
    step = first
    for move in [0, *moves]:  # mostly forward by one candle, as cycles go, with pauses, jumps and returns
        step += move
        until = T0 + timedelta(minutes=5 * step, seconds=step % 2)
        closed = opens[opens + M5 <= ms_from_utc(until)]
        window = store.closed_window("BTCUSDT", Timeframe.M5, until, 3)
        assert [c.open_time_ms for c in window] == closed[-3:].tolist()
        end_ms = ms_from_utc(until)
        for back in (1, 2, 7, 0, -1):  # ranges of one candle (the exchange's catch-up), several, none, inverted
            start_ms = end_ms - back * M5
            between = store.candles_between("BTCUSDT", Timeframe.M5, start_ms, end_ms)
            assert [c.open_time_ms for c in between] == opens[(opens >= start_ms) & (opens < end_ms)].tolist()


def test_decimals_are_exact_text_and_arrays_match(tmp_path: Path) -> None:
    write(tmp_path, "binance_ETHUSDT_5m.csv.gz", [row(0, "0.1", "0.3", "0.1", "0.2", "1.23456789012345678")])
    store = CandleStore.load(tmp_path)
    end = T0 + timedelta(minutes=5)
    assert store.closed_candles("ETHUSDT", Timeframe.M5, end, 1) == [
        Candle(T0_MS, Decimal("0.1"), Decimal("0.3"), Decimal("0.1"), Decimal("0.2"), Decimal("1.23456789012345678"))
    ]
    arrays = store.closed_arrays("ETHUSDT", Timeframe.M5, end, 1)
    assert arrays.open_time_ms.dtype == np.int64 and arrays.close.tolist() == [0.2]


@pytest.mark.parametrize(
    ("lines", "header", "expected"),
    [
        ([row(0)], "time,open,high,low,close,volume", "line 1: bad header"),
        ([row(0), row(1) + ",7"], HEADER, "line 3: wrong column count"),
        ([row(0), f"{row_ms(1)},100,101,99"], HEADER, "line 3: wrong column count"),
        ([row(0), row(1), row(2, c="abc")], HEADER, "line 4: non-numeric value 'abc' in column close"),
        ([row(0), row(1, h="98")], HEADER, "line 3: high 98.0 below low 99.0"),
        ([row(0), f"{row_ms(1) + 1000},100,101,99,100,1"], HEADER, "not aligned to 5m"),
        ([row(0), row(2), row(1)], HEADER, "line 4: open time"),
        ([row(0), row(1), row(1)], HEADER, "line 4: duplicate open time"),
        ([row(0), "", row(1)], HEADER, "line 3: wrong column count"),
    ],
    ids=[
        "header",
        "extra-column",
        "missing-column",
        "non-numeric",
        "high-below-low",
        "unaligned",
        "descending",
        "duplicate",
        "blank-line",
    ],
)
def test_malformed_file_names_file_line_and_problem(
    tmp_path: Path, lines: list[str], header: str, expected: str
) -> None:
    write(tmp_path, "binance_BTCUSDT_5m.csv", lines, header=header)
    with pytest.raises(DataError) as caught:
        CandleStore.load(tmp_path)
    message = str(caught.value)
    assert "binance_BTCUSDT_5m.csv" in message
    assert expected in message


def test_fields_in_exponent_form_are_read_exactly(tmp_path: Path) -> None:
    """Fields in exponent form go through Decimal (the C parser's result is kept only for plain short fields)."""
    for name, volume in (("BTCUSDT", "1.5E-7"), ("ETHUSDT", "2.5e-3")):
        write(tmp_path, f"binance_{name}_5m.csv", [row(0, v=volume), row(1, c="100.1")])
        store = CandleStore.load(tmp_path, symbols=[name])
        arrays = store.closed_arrays(name, Timeframe.M5, T0 + timedelta(minutes=10), 2)
        assert arrays.volume.tolist() == [float(Decimal(volume)), 2.0] and arrays.close.tolist() == [100.5, 100.1]


def test_of_several_bad_files_the_first_by_symbol_then_timeframe_is_named(tmp_path: Path) -> None:
    """The error is the one a reading by symbol, then 5m, 15m, 1h meets first."""
    bad = [row(0), row(1, h="98")]
    for name in ("binance_ETHUSDT_5m.csv", "binance_BTCUSDT_1h.csv", "binance_BTCUSDT_15m.csv"):
        write(tmp_path, name, bad)
    write(tmp_path, "binance_BTCUSDT_5m.csv", [row(0), row(1)])
    with pytest.raises(DataError, match="binance_BTCUSDT_15m.csv"):
        CandleStore.load(tmp_path)
    write(tmp_path, "binance_BTCUSDT_5m.csv", bad)
    with pytest.raises(DataError, match="binance_BTCUSDT_5m.csv"):
        CandleStore.load(tmp_path)


def test_missing_symbol_and_corrupt_gzip_are_data_errors(tmp_path: Path) -> None:
    write(tmp_path, "binance_BTCUSDT_5m.csv", [row(0)])
    with pytest.raises(DataError, match="SOLUSDT"):
        CandleStore.load(tmp_path, symbols=["SOLUSDT"])
    (tmp_path / "binance_ETHUSDT_5m.csv.gz").write_bytes(b"not gzip")
    with pytest.raises(DataError, match="binance_ETHUSDT_5m.csv.gz"):
        CandleStore.load(tmp_path)


def test_resampling_emits_partial_buckets_and_reports_gaps(tmp_path: Path) -> None:
    # 5m candles 0..8 with 4..6 missing: 15m bucket 0 full, bucket 1 (3..5) partial, bucket 2 (6..8) partial
    present = [0, 1, 2, 3, 7, 8]
    write(
        tmp_path,
        "binance_BTCUSDT_5m.csv",
        [row(i, o=f"{i}.5", h=f"{i + 10}", lo=f"{i}.25", c=f"{i + 1}") for i in present],
    )
    store = CandleStore.load(tmp_path)
    candles = store.closed_candles("BTCUSDT", Timeframe.M15, T0 + timedelta(hours=1), 10)
    assert candles == [
        Candle(row_ms(0), Decimal("0.5"), Decimal("12"), Decimal("0.25"), Decimal("3"), Decimal("6")),
        Candle(row_ms(3), Decimal("3.5"), Decimal("13"), Decimal("3.25"), Decimal("4"), Decimal("2")),
        Candle(row_ms(6), Decimal("7.5"), Decimal("18"), Decimal("7.25"), Decimal("9"), Decimal("4")),
    ]
    assert store.gaps("BTCUSDT", Timeframe.M5) == [Gap(row_ms(4), row_ms(6), 3)]
    assert store.gaps("BTCUSDT", Timeframe.M15) == []
    assert store.gaps("BTCUSDT", Timeframe.H1) == []


def test_start_end_and_candles_between(tmp_path: Path) -> None:
    write(tmp_path, "binance_BTCUSDT_5m.csv", [row(i, c=f"{100 + i}") for i in range(12)])
    store = CandleStore.load(tmp_path, start=utc_from_ms(row_ms(2)), end=utc_from_ms(row_ms(10)))
    assert store.span("BTCUSDT") == (utc_from_ms(row_ms(2)), utc_from_ms(row_ms(10)))
    between = store.candles_between("BTCUSDT", Timeframe.M5, row_ms(3), row_ms(5))
    assert [c.close for c in between] == [Decimal("103"), Decimal("104")]
    assert len(store.arrays_between("BTCUSDT", Timeframe.M5, row_ms(0), row_ms(99))) == 8


def test_resampled_sample_equals_binance_15m_and_1h_candles() -> None:
    """The bundled 5m sample resampled is exactly Binance's own 15m/1h candles (December 2025, real files)."""
    resampled = CandleStore.load(SAMPLE_DIR)
    real = CandleStore.load(REAL_COARSE_DIR)
    assert set(resampled.symbols()) == {"BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT"}
    until = datetime(2026, 1, 1, tzinfo=UTC)
    for symbol in real.symbols():
        for timeframe, count in ((Timeframe.M15, 2976), (Timeframe.H1, 744)):
            expected = real.closed_candles(symbol, timeframe, until, count)
            assert len(expected) == count
            assert resampled.closed_candles(symbol, timeframe, until, count) == expected
    assert resampled.gaps("BTCUSDT", Timeframe.M5) == []


def test_a_loaded_span_holds_only_its_own_rows_and_the_same_candles() -> None:
    """Loading with start/end copies the span out of the file (a view would keep the whole file alive)."""
    start, end = datetime(2025, 10, 3, 7, 5, tzinfo=UTC), datetime(2025, 10, 9, tzinfo=UTC)
    span = CandleStore.load(SAMPLE_DIR, ["BTCUSDT"], start=start, end=end)
    view = CandleStore.load(SAMPLE_DIR, ["BTCUSDT"]).between(start, end)
    for timeframe in Timeframe:
        kept, full = span._get("BTCUSDT", timeframe), view._get("BTCUSDT", timeframe)
        assert list(kept.arrays.open_time_ms) == list(full.arrays.open_time_ms) and len(kept.arrays) > 50
        assert kept.arrays.open_time_ms.base is None  # its own copy, not a view of the file
        assert span.closed_candles("BTCUSDT", timeframe, end, 10_000) == view.closed_candles("BTCUSDT", timeframe, end, 10_000)
    five = span._get("BTCUSDT", Timeframe.M5)
    assert len(five._text) < 200 * len(five.arrays)  # type: ignore[attr-defined]  # the span's rows, not the file
    hourly = span._get("BTCUSDT", Timeframe.H1)
    assert len(hourly._source.arrays) <= 12 * len(hourly.arrays)  # type: ignore[attr-defined]


def test_a_windows_last_close_is_its_last_candles_close() -> None:
    """Read without building the candle, from the file's text (5m) and from the rows a bucket took it from (1h)."""
    store = CandleStore.load(SAMPLE_DIR, ["BTCUSDT"])
    for minutes in range(0, 24 * 60, 35):
        until = datetime(2025, 10, 3, tzinfo=UTC) + timedelta(minutes=minutes)
        for timeframe in Timeframe:
            close = store.closed_window("BTCUSDT", timeframe, until, 10).last_close()  # before any candle is built
            expected = store.closed_candles("BTCUSDT", timeframe, until, 1)[0].close
            assert close == expected and str(close) == str(expected)
    with pytest.raises(IndexError):
        store.closed_window("BTCUSDT", Timeframe.M5, datetime(2020, 1, 1, tzinfo=UTC), 10).last_close()


def test_the_price_at_a_time_is_the_last_closed_candles_close_as_written(tmp_path: Path) -> None:
    """price_at reads the close from the line's text: digits and exponent as written, whatever ends the line."""
    closes = ["100.50", "1.2E+2", "0.00012300", "7"]
    lines = [row(i, h="200", lo="0.0001", c=c) for i, c in enumerate(closes)]
    path = tmp_path / "binance_BTCUSDT_5m.csv"
    path.write_bytes(("\r\n".join([HEADER, *lines]) + " \r\n").encode())
    store = CandleStore.load(tmp_path)
    for i, close in enumerate(closes):
        price = store.price_at("BTCUSDT", utc_from_ms(row_ms(i + 1)))
        assert str(price) == str(Decimal(close)) == str(store.closed_candles("BTCUSDT", Timeframe.M5,
                                                                            utc_from_ms(row_ms(i + 1)), 1)[0].close)
    with pytest.raises(DataError, match="no closed 5m candle for BTCUSDT"):
        store.price_at("BTCUSDT", utc_from_ms(row_ms(0)))


def _bucket(i: int) -> int:
    return T0_MS + i * Timeframe.M15.ms


def _coarse_row(i: int, o: str, h: str, lo: str, c: str, v: str) -> str:
    return f"{_bucket(i)},{o},{h},{lo},{c},{v}"


def test_a_coarser_file_is_completed_from_5m_wherever_it_has_no_candle_and_its_own_candles_win(tmp_path: Path) -> None:
    """15m buckets 0-17 over 5m rows 0-53, 5m rows 30-35 (buckets 10-11) missing; the 15m file holds buckets 4-7 and
    12-15 only, with prices the 5m rows would not give. Buckets 0-3 (before the file), 8-9 (a gap of the file where
    5m has rows) and 16-17 (after it) are resampled; 10-11 stay a gap (no 5m row there either)."""
    five = [row(i, o=f"{i}.5", h=f"{i + 10}", lo=f"{i}.25", c=f"{i + 1}", v="0.1") for i in range(54)
            if not 30 <= i <= 35]
    write(tmp_path, "binance_BTCUSDT_5m.csv", five)
    own = {i: Candle(_bucket(i), Decimal("7.50"), Decimal("70.0"), Decimal("0.10"), Decimal("8.00"), Decimal("1E+1"))
           for i in (4, 5, 6, 7, 12, 13, 14, 15)}
    write(tmp_path, "binance_BTCUSDT_15m.csv", [_coarse_row(i, "7.50", "70.0", "0.10", "8.00", "1E+1") for i in own])
    store = CandleStore.load(tmp_path)
    candles = store.closed_candles("BTCUSDT", Timeframe.M15, T0 + timedelta(hours=5), 100)

    def resampled(i: int) -> Candle:  # the 15m bucket i from 5m rows 3i..3i+2, all present
        return Candle(_bucket(i), Decimal(f"{3 * i}.5"), Decimal(f"{3 * i + 12}"), Decimal(f"{3 * i}.25"),
                      Decimal(f"{3 * i + 3}"), Decimal("0.3"))

    assert candles == [own[i] if i in own else resampled(i) for i in (*range(10), *range(12, 18))]
    assert [str(c.close) for c in candles[4:8]] == ["8.00"] * 4  # the file's text, not a number rebuilt from it
    assert store.gaps("BTCUSDT", Timeframe.M15) == [Gap(_bucket(10), _bucket(11), 2)]
    arrays = store.closed_arrays("BTCUSDT", Timeframe.M15, T0 + timedelta(hours=5), 100)
    for column, field in zip(arrays.columns()[1:], ("open", "high", "low", "close", "volume"), strict=True):
        assert column.tolist() == [float(getattr(c, field)) for c in candles]  # float() of each exact Decimal
    hourly = store.closed_candles("BTCUSDT", Timeframe.H1, T0 + timedelta(hours=5), 10)  # no 1h file: all resampled
    assert [c.open_time_ms for c in hourly] == [T0_MS + h * Timeframe.H1.ms for h in range(5)]


def test_a_completed_series_reads_the_same_as_a_view_as_a_loaded_span_and_by_its_last_close(tmp_path: Path) -> None:
    five = [row(i, c=f"{100 + i}.10") for i in range(48)]
    write(tmp_path, "binance_ETHUSDT_5m.csv", five)
    write(tmp_path, "binance_ETHUSDT_15m.csv", [_coarse_row(i, "100", "600", "99", f"{500 + i}.50", "6")
                                               for i in (6, 7, 8)])
    start, end = T0 + timedelta(minutes=45), T0 + timedelta(hours=3, minutes=15)
    span = CandleStore.load(tmp_path, start=start, end=end)
    view = CandleStore.load(tmp_path).between(start, end)
    expected = view.closed_candles("ETHUSDT", Timeframe.M15, end, 100)
    assert [str(c.close) for c in expected] == ["111.10", "114.10", "117.10", "506.50", "507.50", "508.50", "129.10",
                                                "132.10", "135.10", "138.10"]
    assert span.closed_candles("ETHUSDT", Timeframe.M15, end, 100) == expected
    for minutes in range(60, 200, 15):
        window = span.closed_window("ETHUSDT", Timeframe.M15, T0 + timedelta(minutes=minutes), 4)
        assert str(window.last_close()) == str(window[-1].close)
    kept = span._get("ETHUSDT", Timeframe.M15)
    assert kept.arrays.open_time_ms.base is None  # its own copy, not a view of the whole series
    file_part, resampled_part = kept._parts  # type: ignore[attr-defined]
    assert len(file_part.arrays) == 3 and len(resampled_part._source.arrays) == 30  # the span's 5m rows, not 48


def test_a_symbol_whose_coarser_files_cover_everything_keeps_them_as_read(tmp_path: Path) -> None:
    write(tmp_path, "binance_BTCUSDT_5m.csv", [row(i) for i in range(6)])
    write(tmp_path, "binance_BTCUSDT_15m.csv", [_coarse_row(i, "100", "200", "99", "100.5", "6") for i in (0, 1)])
    store = CandleStore.load(tmp_path)
    assert type(store._get("BTCUSDT", Timeframe.M15)).__name__ == "TextSeries"


_VOLUMES = {
    "short": st.decimals(min_value=0, max_value=10**6, places=8, allow_nan=False),  # Binance's: summed vectorised
    "huge": st.decimals(min_value=10**14, max_value=10**15 - 1, places=0, allow_nan=False),  # sums past 2**53
    "long": st.decimals(min_value=0, max_value=1, places=17, allow_nan=False),  # 17 digits: a float is not enough
}


@given(data=st.data(), kind=st.sampled_from(sorted(_VOLUMES)), plain=st.booleans())
def test_resampled_volumes_are_float_of_the_exact_decimal_sums(tmp_path_factory: pytest.TempPathFactory,
                                                               data: st.DataObject, kind: str, plain: bool) -> None:
    volumes = data.draw(st.lists(_VOLUMES[kind], min_size=1, max_size=40))
    directory = tmp_path_factory.mktemp("volumes")
    write(directory, "binance_BTCUSDT_5m.csv", [row(i, v=format(v, "f") if plain else str(v))
                                                for i, v in enumerate(volumes)])
    store = CandleStore.load(directory)
    for timeframe, size in ((Timeframe.M15, 3), (Timeframe.H1, 12)):
        arrays = store.arrays_between("BTCUSDT", timeframe, 0, T0_MS + 10**9)
        assert arrays.volume.tolist() == [float(sum(volumes[i : i + size], Decimal(0)))
                                          for i in range(0, len(volumes), size)]


def test_three_tenths_summed_from_short_decimals_and_from_longer_ones_that_float_alike(tmp_path: Path) -> None:
    """0.1 and 0.10000000000000001 are the same float; their sums three at a time are not (0.3 and the float
    above it), and a float sum gives neither exactly (0.30000000000000004 for the first)."""
    for volume, expected in (("0.1", 0.3), ("0.10000000000000001", float(Decimal("0.30000000000000003")))):
        write(tmp_path, "binance_BTCUSDT_5m.csv", [row(i, v=volume) for i in range(3)])
        arrays = CandleStore.load(tmp_path).arrays_between("BTCUSDT", Timeframe.M15, 0, T0_MS + M5 * 3)
        assert arrays.volume.tolist() == [expected]
    assert float(Decimal("0.30000000000000003")) != 0.3 and 0.1 + 0.1 + 0.1 != 0.3


def test_an_hourly_volume_sum_past_2_to_the_53_units_is_rounded_once() -> None:
    """12 volumes of 15 significant digits summing to 938942596763489.9: in tenths past 2**53, where rounding the
    int sum to float first and dividing by ten after would round twice (to the float next to the right one). A file
    writes each in 16 characters, so the store sums them as Decimals; the vectorised sum must not round twice
    either."""
    volumes = ["78245216396957.4"] * 11 + ["78245216396958.5"]
    exact = sum(map(Decimal, volumes), Decimal(0))
    assert exact == Decimal("938942596763489.9") and float(9389425967634899) / 10 != float(exact)
    floats = np.array([float(Decimal(v)) for v in volumes])
    sums = _short_decimal_sums(floats, np.array([0]), np.array([11]))
    assert sums is None or sums.tolist() == [float(exact)]
    sums = _short_decimal_sums(floats[:3], np.array([0]), np.array([2]))  # 3 of them: below 2**53, summed here
    assert sums is not None and sums.tolist() == [float(sum(map(Decimal, volumes[:3]), Decimal(0)))]
