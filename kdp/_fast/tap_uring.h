/* A minimal io_uring for TapIO's batched writes, through the raw system calls (no
 * liburing: `pip install .` needs nothing but the kernel's uapi header).
 *
 * One ring, used by one thread at a time (TapIO's loop or its writer thread, never both:
 * the writer's mutex orders them). A batch's writes are queued as IORING_OP_WRITEV
 * entries and handed to the kernel with one io_uring_enter that also waits for all of
 * them: a TAP write never blocks (the fd is non-blocking and the kernel runs the write at
 * submission), so the call returns when every frame has been written, as the writev loop
 * did, for one system call a chunk instead of one a frame.
 *
 * Memory order: the kernel reads the SQ tail and writes the CQ tail; we publish the SQ
 * tail with release (after the entries) and read the CQ tail with acquire (before the
 * completions), then hand the CQ head back with release, as the io_uring ABI requires.
 */
#ifndef KDP_TAP_URING_H
#define KDP_TAP_URING_H

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <linux/io_uring.h>

typedef struct {
    int fd;                         /* the ring's fd; -1: none */
    unsigned entries;               /* SQ entries: at most this many writes a submission */
    unsigned *sq_tail, *sq_mask, *sq_array;
    unsigned *cq_head, *cq_tail, *cq_mask;
    struct io_uring_cqe *cqes;
    struct io_uring_sqe *sqes;
    void *sq_ring, *cq_ring;
    size_t sq_ring_sz, cq_ring_sz, sqes_sz;
    struct iovec *iov;              /* two a queued write: the vnet header, the frame */
    uint8_t *hdr;                   /* 12 bytes a queued write */
} kdp_uring_t;

static inline void kdp_uring_init(kdp_uring_t *r) {
    memset(r, 0, sizeof *r);
    r->fd = -1;
}

static inline void kdp_uring_close(kdp_uring_t *r) {
    if (r->sqes) munmap(r->sqes, r->sqes_sz);
    if (r->cq_ring && r->cq_ring != r->sq_ring) munmap(r->cq_ring, r->cq_ring_sz);
    if (r->sq_ring) munmap(r->sq_ring, r->sq_ring_sz);
    if (r->fd >= 0) close(r->fd);
    free(r->iov);
    free(r->hdr);
    kdp_uring_init(r);
}

/* 0, or the errno of what the kernel (or memory) refused; the ring is closed then. */
static inline int kdp_uring_open(kdp_uring_t *r, unsigned entries) {
    struct io_uring_params p;
    int err;
    kdp_uring_init(r);
    memset(&p, 0, sizeof p);
    p.flags = IORING_SETUP_SUBMIT_ALL;          /* 5.18: a failed entry does not stop the rest */
    r->fd = (int)syscall(__NR_io_uring_setup, entries, &p);
    if (r->fd < 0 && errno == EINVAL) {         /* an older kernel: without the flag */
        memset(&p, 0, sizeof p);
        r->fd = (int)syscall(__NR_io_uring_setup, entries, &p);
    }
    if (r->fd < 0) {
        err = errno;
        r->fd = -1;
        return err;
    }
    r->entries = p.sq_entries;
    r->sq_ring_sz = p.sq_off.array + p.sq_entries * sizeof(unsigned);
    r->cq_ring_sz = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
    if (p.features & IORING_FEAT_SINGLE_MMAP) {
        if (r->cq_ring_sz > r->sq_ring_sz) r->sq_ring_sz = r->cq_ring_sz;
        r->cq_ring_sz = r->sq_ring_sz;
    }
    r->sq_ring = mmap(NULL, r->sq_ring_sz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
                      r->fd, IORING_OFF_SQ_RING);
    if (r->sq_ring == MAP_FAILED) { r->sq_ring = NULL; goto fail; }
    if (p.features & IORING_FEAT_SINGLE_MMAP) {
        r->cq_ring = r->sq_ring;
    } else {
        r->cq_ring = mmap(NULL, r->cq_ring_sz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
                          r->fd, IORING_OFF_CQ_RING);
        if (r->cq_ring == MAP_FAILED) { r->cq_ring = NULL; goto fail; }
    }
    r->sqes_sz = p.sq_entries * sizeof(struct io_uring_sqe);
    r->sqes = mmap(NULL, r->sqes_sz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
                   r->fd, IORING_OFF_SQES);
    if (r->sqes == MAP_FAILED) { r->sqes = NULL; goto fail; }
    r->sq_tail = (unsigned *)((char *)r->sq_ring + p.sq_off.tail);
    r->sq_mask = (unsigned *)((char *)r->sq_ring + p.sq_off.ring_mask);
    r->sq_array = (unsigned *)((char *)r->sq_ring + p.sq_off.array);
    r->cq_head = (unsigned *)((char *)r->cq_ring + p.cq_off.head);
    r->cq_tail = (unsigned *)((char *)r->cq_ring + p.cq_off.tail);
    r->cq_mask = (unsigned *)((char *)r->cq_ring + p.cq_off.ring_mask);
    r->cqes = (struct io_uring_cqe *)((char *)r->cq_ring + p.cq_off.cqes);
    r->iov = (struct iovec *)calloc((size_t)r->entries * 2, sizeof(struct iovec));
    r->hdr = (uint8_t *)calloc((size_t)r->entries, 12);
    if (!r->iov || !r->hdr) { errno = ENOMEM; goto fail; }
    return 0;
fail:
    err = errno;
    kdp_uring_close(r);
    return err;
}

/* The k-th write of the chunk being queued (k < entries): its header slot (12 bytes, the
 * caller fills it) ... */
static inline uint8_t *kdp_uring_hdr(kdp_uring_t *r, unsigned k) {
    return r->hdr + (size_t)k * 12;
}

/* ... then the entry: writev(fd, [header, frame]) tagged with `tag`. */
static inline void kdp_uring_writev(kdp_uring_t *r, unsigned k, int fd, const uint8_t *frame,
                                    uint32_t n, uint64_t tag) {
    unsigned tail = *r->sq_tail + k;            /* only we move the tail */
    unsigned idx = tail & *r->sq_mask;
    struct io_uring_sqe *e = &r->sqes[idx];
    struct iovec *iov = &r->iov[2 * k];
    iov[0].iov_base = kdp_uring_hdr(r, k);
    iov[0].iov_len = 12;
    iov[1].iov_base = (void *)frame;
    iov[1].iov_len = n;
    memset(e, 0, sizeof *e);
    e->opcode = IORING_OP_WRITEV;
    e->fd = fd;
    e->addr = (uint64_t)(uintptr_t)iov;
    e->len = 2;
    e->off = (uint64_t)-1;                      /* the file position: a TAP has none */
    e->user_data = tag;
    r->sq_array[idx] = idx;
}

/* Submit the k queued writes, waiting for their completions in the same call (a TAP
 * write completes at submission). Returns how many the kernel took, always a prefix of
 * the k (it takes entries in order); the rest are taken back, for the caller to write
 * itself. 0 with `*err` set when it took none. */
static inline unsigned kdp_uring_submit(kdp_uring_t *r, unsigned k, int *err) {
    unsigned done = 0;
    int got;
    *err = 0;
    __atomic_store_n(r->sq_tail, *r->sq_tail + k, __ATOMIC_RELEASE);
    while (done < k) {
        got = (int)syscall(__NR_io_uring_enter, r->fd, k - done, k - done, IORING_ENTER_GETEVENTS, NULL, 0);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0) {
            *err = got < 0 ? errno : EAGAIN;
            /* the kernel's head stopped at done: the rest go back */
            __atomic_store_n(r->sq_tail, *r->sq_tail - (k - done), __ATOMIC_RELEASE);
            break;
        }
        done += (unsigned)got;
    }
    return done;
}

/* Wait until at least n completions are there (after a signal cut the submission's wait). */
static inline int kdp_uring_wait(kdp_uring_t *r, unsigned n) {
    int got;
    do {
        got = (int)syscall(__NR_io_uring_enter, r->fd, 0, n, IORING_ENTER_GETEVENTS, NULL, 0);
    } while (got < 0 && errno == EINTR);
    return got < 0 ? -errno : 0;
}

/* The next completion: 1 with its tag and result (bytes written, or -errno), 0 when none. */
static inline int kdp_uring_reap(kdp_uring_t *r, uint64_t *tag, int *res) {
    unsigned head = *r->cq_head;
    if (head == __atomic_load_n(r->cq_tail, __ATOMIC_ACQUIRE))
        return 0;
    *tag = r->cqes[head & *r->cq_mask].user_data;
    *res = r->cqes[head & *r->cq_mask].res;
    __atomic_store_n(r->cq_head, head + 1, __ATOMIC_RELEASE);
    return 1;
}

#endif
