"""An existing output capture or log is replaced (removed, created anew), not truncated in
place (kdp/io/capture.py unlink_for_replacement): the bytes are those of a fresh run,
another hard link of the old file keeps the old bytes, a symbolic link is written
through, and what is not a regular file (a FIFO, a device) is left alone."""
import os
from pathlib import Path

from kdp.io.capture import unlink_for_replacement
from kdp.replay import replay

SAMPLE = Path(__file__).resolve().parent.parent / "pcaps" / "sample.pcap"


def _fresh(tmp_path):
    out, log = tmp_path / "fresh.pcap", tmp_path / "fresh.jsonl"
    replay(str(SAMPLE), output=str(out), log=str(log))
    return out.read_bytes(), log.read_bytes()


def test_an_existing_output_and_log_get_a_fresh_runs_bytes_in_a_new_file(tmp_path):
    want_out, want_log = _fresh(tmp_path)
    out, log = tmp_path / "out.pcap", tmp_path / "log.jsonl"
    out.write_bytes(b"old capture " * 100_000)
    log.write_bytes(b"old log\n" * 100_000)
    old_inode = out.stat().st_ino
    keep = tmp_path / "kept.pcap"
    os.link(out, keep)
    replay(str(SAMPLE), output=str(out), log=str(log))
    assert out.read_bytes() == want_out
    assert log.read_bytes() == want_log
    assert out.stat().st_ino != old_inode
    assert keep.read_bytes() == b"old capture " * 100_000


def test_a_symbolic_link_as_output_is_written_through(tmp_path):
    want_out, _ = _fresh(tmp_path)
    target = tmp_path / "real.pcap"
    target.write_bytes(b"x" * 4096)
    link = tmp_path / "link.pcap"
    link.symlink_to(target)
    replay(str(SAMPLE), output=str(link))
    assert link.is_symlink()
    assert target.read_bytes() == want_out


def test_what_is_not_a_regular_file_is_left_alone(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    unlink_for_replacement(str(fifo))
    unlink_for_replacement("-")
    unlink_for_replacement(str(tmp_path / "missing.pcap"))
    assert fifo.exists() and not fifo.is_file()
    replay(str(SAMPLE), output=os.devnull)      # a device: written, not removed
    assert Path(os.devnull).exists() and not Path(os.devnull).is_file()
