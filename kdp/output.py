"""What a replay writes after each batch (the output capture, the verdict log, pcapng
comments), inline or on a second core.

With `threaded`, a writer thread writes batch k while the pipeline runs batch k+1:
the replay alternates between two batches (and two verdict logs, whose tuples as
received belong to their batch), and hands each to the thread in input order; the
thread writes them in that order, so the files are the same bytes as one thread's.
The heavy parts (CaptureWriter's copy, the log's formatting, the file writes) release
the GIL. A batch is refilled only after the thread is done with it. IPv4 fragments
kdp made (Dataplane.extra, one array the next batch reuses) are written before the
next batch runs: such a batch waits for the thread. An error in the thread (a full
disk) is raised in the replay at its next hand-over.
"""
import queue
import threading

import numpy as np


class Output:
    """Writes the batches a replay hands it. `make_writer()` opens the capture writer
    (None: no output file) when the first batch comes; `logs` are the VerdictLogs the
    batches alternate between (one for inline writing), None without --log."""

    def __init__(self, make_writer, logs=None, notes=None, threaded=False):
        self.make_writer = make_writer
        self.writer = None
        self.logs = logs
        self.notes = notes
        self.threaded = threaded
        self.error = None
        if threaded:
            self.jobs = queue.Queue(maxsize=1)
            self.free = [threading.Semaphore(1), threading.Semaphore(1)]
            self.thread = threading.Thread(target=self._run, name="kdp-output", daemon=True)
            self.thread.start()

    def slot_free(self, slot):
        """Wait until the batch in `slot` may be refilled."""
        if self.threaded:
            self.free[slot].acquire()
            self._raise()

    def submit(self, slot, batch, log, keep, base, extra):
        """Write `batch` (its input indices start at `base`), then `extra`, and its log
        lines (`keep`: the mask of lines kept, None: all)."""
        if self.writer is None:
            self.writer = self.make_writer()
        if not self.threaded:
            self._write(batch, log, keep, base, extra)
            return
        if extra is not None:
            self.finish_pending()
            self._write(batch, log, keep, base, extra)
            self.free[slot].release()
            return
        self.jobs.put((slot, batch, log, keep, base))
        self._raise()

    def finish_pending(self):
        """Wait until every batch handed over is written."""
        if self.threaded:
            self.jobs.join()
            self._raise()

    def close(self):
        """Stop the thread (after what it was given); returns the writer (None: none)."""
        if self.threaded and self.thread.is_alive():
            self.jobs.put(None)
            self.thread.join()
        self._raise()
        return self.writer

    def _raise(self):
        if self.error is not None:
            error, self.error = self.error, None
            raise error

    def _run(self):
        while True:
            job = self.jobs.get()
            try:
                if job is None:
                    return
                slot, batch, log, keep, base = job
                if self.error is None:
                    self._write(batch, log, keep, base, None)
                self.free[slot].release()
            except BaseException as exc:        # handed to the replay's thread
                self.error = exc
                self.free[job[0]].release()
            finally:
                self.jobs.task_done()

    def _write(self, batch, log, keep, base, extra):
        writer = self.writer
        first_frame = None
        if writer is not None:
            first_frame = writer.packets
            comments = self.notes.take(batch, first_frame, keep) if self.notes is not None else None
            writer.write(batch, comments)
            if extra is not None:
                writer.write(extra)
        if log is not None and self.notes is None:
            indices = np.arange(base, base + len(batch), dtype=np.uint64) if self.threaded else None
            log.write(batch, first_frame=first_frame, keep=keep, indices=indices)
