"""TapIO.wait's busy polling (kdp attach --busy-poll): it asks without sleeping for the
time it is given, takes a frame that comes meanwhile at once, and sleeps only after.
Any pollable descriptor stands in for a TAP device here: a pipe."""
import os
import threading
import time

from kdp._fast.tapio import TapIO


def _io():
    r, w = os.pipe()
    return TapIO([r], [0], b"\x02\x00\x00\x00\x00\x01"), r, w


def test_wait_spins_for_the_time_given_then_times_out():
    io, r, w = _io()
    try:
        t = time.monotonic()
        assert io.wait(0, 200_000) == 0          # nothing came: 0.2 s of asking, no sleep after
        assert time.monotonic() - t >= 0.2
        t = time.monotonic()
        assert io.wait(0) == 0                   # without spinning it returns at once
        assert time.monotonic() - t < 0.1
    finally:
        os.close(r)
        os.close(w)


def test_a_frame_that_comes_while_spinning_is_seen_at_once():
    io, r, w = _io()
    try:
        writer = threading.Timer(0.05, os.write, (w, b"x"))
        writer.start()
        t = time.monotonic()
        # a second of spinning, no sleep after: returns when the byte comes, not at the end
        assert io.wait(0, 1_000_000) == 1
        assert 0.04 <= time.monotonic() - t < 0.9
        writer.join()
    finally:
        os.close(r)
        os.close(w)


def test_a_ready_port_returns_before_any_spinning():
    io, r, w = _io()
    try:
        os.write(w, b"x")
        t = time.monotonic()
        assert io.wait(100, 1_000_000) == 1
        assert time.monotonic() - t < 0.5
    finally:
        os.close(r)
        os.close(w)
