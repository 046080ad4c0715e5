/* A bare TAP-to-TAP forwarder: what the TAP devices allow on this machine, with none of
 * kdp's work (bench/attach_bare.py runs it beside kdp and the kernel path). Not part of
 * kdp.
 *
 * Two TAP devices opened as kdp opens them (IFF_TAP | IFF_NO_PI | IFF_VNET_HDR, a 12-byte
 * virtio-net header, offloads TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6); every frame read
 * from one is written to the other with the header it came with (partial checksums and
 * TCP super-frames cross untouched: the receiving kernel finishes them). No parsing, no
 * MAC rewrite: the namespaces address each other's TAP MAC through static neighbours.
 *
 *   tap_forward MODE DEV_A DEV_B SECONDS
 *   MODE threads: one thread per direction, blocking read -> write
 *        spin:    one thread per direction, non-blocking reads retried without sleeping
 *                 for up to 50 us before a blocking poll() (kdp's --busy-poll default)
 *        poll:    one thread, poll() on both, then a read -> write from each ready one
 *
 * Prints "ready" once both devices exist (the caller then moves them into namespaces),
 * runs SECONDS (bounded) or until SIGTERM/SIGINT, then prints the frames and bytes each
 * direction carried.
 * Build: cc -O2 -pthread -o /tmp/tap_forward bench/tap_forward.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define HDR 12
#define FRAME (65536 + 64)

static volatile sig_atomic_t stop_asked;

struct dir {
    int in, out;
    uint64_t frames, bytes, errors;
};

static int open_tap(const char *name, int nonblock)
{
    struct ifreq ifr;
    int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC | (nonblock ? O_NONBLOCK : 0));
    int hdr = HDR;
    if (fd < 0) {
        perror("/dev/net/tun");
        exit(2);
    }
    memset(&ifr, 0, sizeof ifr);
    snprintf(ifr.ifr_name, IFNAMSIZ, "%s", name);
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
    if (ioctl(fd, TUNSETIFF, &ifr) < 0 || ioctl(fd, TUNSETVNETHDRSZ, &hdr) < 0 ||
        ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6) < 0) {
        fprintf(stderr, "%s: %s\n", name, strerror(errno));
        exit(2);
    }
    return fd;
}

/* one frame from d->in to d->out; 0: nothing (EAGAIN, or interrupted) */
static int forward_one(struct dir *d, uint8_t *hdr, uint8_t *buf)
{
    struct iovec iov[2] = {{hdr, HDR}, {buf, FRAME}};
    ssize_t r = readv(d->in, iov, 2);
    if (r <= HDR)
        return 0;
    iov[1].iov_len = (size_t)r - HDR;
    if (writev(d->out, iov, 2) < 0)
        d->errors++;
    else {
        d->frames++;
        d->bytes += (uint64_t)r - HDR;
    }
    return 1;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void *spinning(void *arg)
{
    struct dir *d = arg;
    uint8_t hdr[HDR];
    uint8_t *buf = malloc(FRAME);
    struct pollfd p = {d->in, POLLIN, 0};
    while (!stop_asked) {
        uint64_t until;
        if (forward_one(d, hdr, buf))
            continue;
        until = now_ns() + 50000;
        while (!stop_asked && now_ns() < until)
            if (forward_one(d, hdr, buf))
                until = now_ns() + 50000;
        if (!stop_asked)
            poll(&p, 1, 100);
    }
    free(buf);
    return NULL;
}

static void *direction(void *arg)
{
    struct dir *d = arg;
    uint8_t hdr[HDR];
    uint8_t *buf = malloc(FRAME);
    while (!stop_asked)
        forward_one(d, hdr, buf);   /* a blocking read; SIGALRM/SIGTERM interrupt it */
    free(buf);
    return NULL;
}

static void on_signal(int sig)
{
    (void)sig;
    stop_asked = 1;
}

int main(int argc, char **argv)
{
    struct sigaction sa;
    struct dir d[2];
    int threads, spin, a, b;
    unsigned seconds;
    if (argc != 5 || (strcmp(argv[1], "threads") && strcmp(argv[1], "spin") && strcmp(argv[1], "poll"))) {
        fprintf(stderr, "usage: tap_forward threads|spin|poll DEV_A DEV_B SECONDS\n");
        return 2;
    }
    spin = !strcmp(argv[1], "spin");
    threads = spin || !strcmp(argv[1], "threads");
    seconds = (unsigned)atoi(argv[4]);
    a = open_tap(argv[2], !threads || spin);
    b = open_tap(argv[3], !threads || spin);
    d[0] = (struct dir){a, b, 0, 0, 0};
    d[1] = (struct dir){b, a, 0, 0, 0};
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;      /* no SA_RESTART: a blocked read returns EINTR */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGALRM, &sa, NULL);
    printf("ready\n");
    fflush(stdout);
    if (threads) {
        pthread_t t[2];
        pthread_create(&t[0], NULL, spin ? spinning : direction, &d[0]);
        pthread_create(&t[1], NULL, spin ? spinning : direction, &d[1]);
        alarm(seconds);
        /* the signal goes to one thread; the other may sit in a blocking read: wake it */
        while (!stop_asked)
            pause();
        pthread_kill(t[0], SIGALRM);
        pthread_kill(t[1], SIGALRM);
        pthread_join(t[0], NULL);
        pthread_join(t[1], NULL);
    } else {
        uint8_t hdr[HDR];
        uint8_t *buf = malloc(FRAME);
        struct pollfd p[2] = {{a, POLLIN, 0}, {b, POLLIN, 0}};
        alarm(seconds);
        while (!stop_asked) {
            if (poll(p, 2, 100) <= 0)
                continue;
            for (int i = 0; i < 2; i++)
                if (p[i].revents)
                    while (forward_one(&d[i], hdr, buf) && !stop_asked)
                        if (d[i].frames % 8 == 0)
                            break;      /* take turns: at most 8 frames a side a round */
        }
        free(buf);
    }
    printf("a->b %llu frames %llu bytes %llu errors; b->a %llu frames %llu bytes %llu errors\n",
           (unsigned long long)d[0].frames, (unsigned long long)d[0].bytes, (unsigned long long)d[0].errors,
           (unsigned long long)d[1].frames, (unsigned long long)d[1].bytes, (unsigned long long)d[1].errors);
    return 0;
}
