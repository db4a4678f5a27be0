"""Pacing accuracy, run-time config, and the process: CLI flags, signals, restarts."""

from __future__ import annotations

import signal
import time

import anthropic
import pytest

from emulator.__main__ import parse_args

# Thinking is off by default on this model, so these tests see the text alone (always-on
# thinking models are covered in test_conformance_thinking.py).
MODEL = "claude-haiku-5-5"
HI = [{"role": "user", "content": "Describe the tides in a few sentences, please."}]


def test_paced_stream_takes_its_ideal_time(emulator_clean):
    emulator_clean.config(ttft_ms=200, tokens_per_second=50)
    n = 40  # max_tokens cuts the reply at exactly n tokens
    arrivals = []
    with emulator_clean.client(max_retries=0) as c:
        t0 = time.monotonic()
        with c.messages.stream(model=MODEL, max_tokens=n, messages=HI) as stream:
            for _ in stream.text_stream:
                arrivals.append(time.monotonic() - t0)
            final = stream.get_final_message()
        total = time.monotonic() - t0
    assert final.usage.output_tokens == len(arrivals) == n
    ideal = 0.2 + (n - 1) / 50
    assert 0.19 <= arrivals[0] <= 0.35  # first token after ttft
    assert arrivals[-1] - arrivals[0] == pytest.approx((n - 1) / 50, abs=0.06)
    assert ideal <= total + 0.005 and total <= ideal * 1.1 + 0.05
    # Spread out, not bunched: no gap much bigger than one token's interval.
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:], strict=False)]
    assert max(gaps) < 0.08


def test_non_streaming_waits_for_generation_and_config_changes_at_run_time(emulator_clean):
    with emulator_clean.client(max_retries=0) as c:
        t0 = time.monotonic()
        c.messages.create(model=MODEL, max_tokens=30, messages=HI)
        unpaced = time.monotonic() - t0
        cfg = emulator_clean.config(ttft_ms=100, tokens_per_second=100)
        assert cfg["ttft_ms"] == 100 and cfg["tokens_per_second"] == 100.0
        t0 = time.monotonic()
        msg = c.messages.create(model=MODEL, max_tokens=30, messages=HI)
        paced = time.monotonic() - t0
    assert msg.usage.output_tokens == 30
    assert unpaced < 0.2
    assert 0.1 + 29 / 100 <= paced < 0.6


def test_config_rejects_bad_values(emulator_clean):
    from emulator.testing import EmulatorError

    for bad in ({"ttft_ms": -1}, {"tokens_per_second": "fast"}, {"colour": "blue"}):
        with pytest.raises(EmulatorError, match="400"):
            emulator_clean.config(**bad)
    assert emulator_clean.config()["ttft_ms"] == 0


def test_interactive_defaults_are_paced():
    args = parse_args([])
    assert (args.host, args.port, args.api_key) == ("127.0.0.1", 4010, "emulator-key")
    assert args.ttft_ms > 0 and args.tokens_per_second > 0


def test_cli_flags_restart_and_signals(emulator_factory, tmp_path):
    emu = emulator_factory(
        "--api-key", "k-test", "--rate-limit-rpm", "50", "--seed", "3",
        "--batch-seconds", "1.5", "--state-dir", str(tmp_path),
    )  # fmt: skip
    cfg = emu.config()
    assert cfg == {
        "ttft_ms": 0,
        "tokens_per_second": 0.0,
        "batch_seconds": 1.5,
        "rate_limit_rpm": 50,
        "seed": 3,
        "batch_max_requests": 100_000,
        "batch_max_bytes": 256 * 1024 * 1024,
    }
    with emu.client(max_retries=0) as c:
        first = c.messages.create(model=MODEL, max_tokens=200, messages=HI).content[0].text
        with (
            emu.client(api_key="emulator-key", max_retries=0) as wrong,
            pytest.raises(anthropic.AuthenticationError),
        ):
            wrong.messages.create(model=MODEL, max_tokens=20, messages=HI)
        port = emu.port
        assert emu.stop() == 0  # SIGTERM: clean exit
        with pytest.raises(anthropic.APIConnectionError):
            c.with_options(max_retries=0, timeout=2).models.list()
        emu.start()
        assert emu.port == port  # same URL, so the old client works again
        again = c.messages.create(model=MODEL, max_tokens=200, messages=HI).content[0].text
    assert again == first  # deterministic across restarts
    assert emu.stop(sig=signal.SIGINT) == 0
