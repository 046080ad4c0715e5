# Declarations of tap_uring.h: the io_uring TapIO writes its batches through (raw system
# calls, no liburing). The C is in the header; see it for what each one does. Only
# tapio.pyx cimports this.

from libc.stdint cimport uint8_t, uint32_t, uint64_t

cdef extern from "tap_uring.h" nogil:
    ctypedef struct kdp_uring_t:
        int fd
        unsigned entries

    void kdp_uring_init(kdp_uring_t* r)
    int kdp_uring_open(kdp_uring_t* r, unsigned entries)
    void kdp_uring_close(kdp_uring_t* r)
    uint8_t* kdp_uring_hdr(kdp_uring_t* r, unsigned k)
    void kdp_uring_writev(kdp_uring_t* r, unsigned k, int fd, const uint8_t* frame, uint32_t n, uint64_t tag)
    unsigned kdp_uring_submit(kdp_uring_t* r, unsigned k, int* err)
    int kdp_uring_wait(kdp_uring_t* r, unsigned n)
    int kdp_uring_reap(kdp_uring_t* r, uint64_t* tag, int* res)
