"""Coverage-guided fuzzing of the input parsers (atheris, libFuzzer): whatever the
bytes, `parse_event` and `parse_spend` return an event or an `Invalid` with one
documented reason, never raise. Run by tests/unit/test_fuzz_parser.py for a bounded
time; by hand: `python tests/fuzz/fuzz_parser.py -max_total_time=600 CORPUS_DIR`."""

import sys

import atheris

with atheris.instrument_imports():
    from streams.events import REASONS, Event, Invalid, SpendEvent, parse_event, parse_spend

NOW_MS = 1_793_491_200_000


def test_one_input(data: bytes) -> None:
    for parse, valid in ((parse_event, Event), (parse_spend, SpendEvent)):
        result = parse(data, max_bytes=4096, now_ms=NOW_MS)
        if isinstance(result, Invalid):
            if result.reason not in REASONS or not isinstance(result.detail, str):
                raise AssertionError(f"bad Invalid {result!r} for {data!r}")
        elif not isinstance(result, valid):
            raise AssertionError(f"{parse.__name__} returned {result!r} for {data!r}")


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
