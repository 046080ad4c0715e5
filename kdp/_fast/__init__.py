"""The Cython core: per-packet work, batch at a time, under nogil."""
