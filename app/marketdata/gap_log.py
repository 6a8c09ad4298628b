"""exchange_gaps.json: the open times the exchange answered without a candle, so a resumed download skips them."""

from __future__ import annotations

import json
from pathlib import Path

from app.domain.errors import DataError
from app.domain.values import Timeframe
from app.marketdata.file_writer import write_atomically
from app.marketdata.spans import Span, merged

GAP_LOG_FILE = "exchange_gaps.json"


class ExchangeGapLog:
    """Per symbol and timeframe, the spans of closed candles the exchange does not have (a trading halt, the time
    before a listing). Stored as `{"BTCUSDT": {"5m": [[start_ms, end_ms], ...]}}`, end excluded; delete the file
    to ask the exchange again."""

    def __init__(self, path: Path, spans: dict[tuple[str, Timeframe], list[Span]]) -> None:
        self._path = path
        self._spans = spans

    @classmethod
    def load(cls, directory: Path) -> ExchangeGapLog:
        path = directory / GAP_LOG_FILE
        if not path.exists():
            return cls(path, {})
        try:
            data = json.loads(path.read_text())
            spans = {(symbol, Timeframe(tf)): [Span(int(a), int(b)) for a, b in pairs]
                     for symbol, by_tf in data.items() for tf, pairs in by_tf.items()}
        except (OSError, ValueError, TypeError, AttributeError) as e:
            raise DataError(f"{path}: cannot read ({e}); delete it to ask the exchange for every gap again") from e
        return cls(path, spans)

    def spans(self, symbol: str, timeframe: Timeframe) -> list[Span]:
        return list(self._spans.get((symbol, timeframe), []))

    def covers(self, symbol: str, timeframe: Timeframe, span: Span) -> bool:
        known = self._spans.get((symbol, timeframe), [])
        return any(k.start_ms <= span.start_ms and span.end_ms <= k.end_ms for k in known)

    def add(self, symbol: str, timeframe: Timeframe, spans: list[Span]) -> None:
        key = (symbol, timeframe)
        self._spans[key] = merged([*self._spans.get(key, []), *spans])

    def save(self) -> None:
        data: dict[str, dict[str, list[list[int]]]] = {}
        for (symbol, timeframe), spans in sorted(self._spans.items()):
            data.setdefault(symbol, {})[timeframe.value] = [[s.start_ms, s.end_ms] for s in spans]
        write_atomically(self._path, [(json.dumps(data, indent=1) + "\n").encode()])
