/* What the memory of this machine allows an LPM lookup, without any LPM:
   the ceiling the IPv4 figures of bench/README.md ("LPM") are compared with
   (this VM has no hardware counters for `perf stat`).

       cc -O2 -march=x86-64-v3 -o /tmp/lpm_memory_bound bench/lpm_memory_bound.c
       /tmp/lpm_memory_bound [MiB of chunks, default 6]

   1. independent random 4-byte loads from one array of 256 KiB .. 64 MiB
      (2 MiB pages), with a prefetch 16 loads ahead: how many random cache
      lines a second one core gets from each level;
   2. a lookup reduced to its memory accesses: a root entry for the top 16
      bits of a random address (8 bytes, as kdp's, or 4), then one byte of one
      line of a "chunk" it names in an arena of the given size, with kdp's
      prefetch ring (root entry 24 addresses ahead, chunk line 8 ahead).
   CPU time of this thread, best of 3, 10 M random addresses (xorshift). */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#define N 10000000u

static double cpu_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static void *huge(size_t size) {
    size_t hp = (size_t)2 << 20, sz = (size + hp - 1) & ~(hp - 1);
    void *p = aligned_alloc(hp, sz);
    if (p == NULL) { perror("aligned_alloc"); exit(1); }
    madvise(p, sz, MADV_HUGEPAGE);
    memset(p, 1, sz);
    return p;
}

int main(int argc, char **argv) {
    size_t arena = (size_t)(argc > 1 ? atoi(argv[1]) : 6) << 20;
    uint32_t *q = malloc(N * sizeof(uint32_t)), *out = malloc(N * sizeof(uint32_t));
    uint64_t s = 88172645463325252ull, acc = 0;
    size_t i, k;
    int rep, root;
    if (q == NULL || out == NULL || arena < (1u << 20)) { fprintf(stderr, "bad size\n"); return 2; }
    for (i = 0; i < N; i++) { s ^= s << 13; s ^= s >> 7; s ^= s << 17; q[i] = (uint32_t)s; }

    for (k = 256 << 10; k <= (size_t)64 << 20; k *= 2) {
        uint32_t *t = huge(k), mask = (uint32_t)(k / 4 - 1);
        double best = 1e9;
        for (rep = 0; rep < 3; rep++) {
            double t0 = cpu_now();
            for (i = 0; i + 16 < N; i++) {
                __builtin_prefetch(&t[q[i + 16] & mask]);
                acc += t[q[i] & mask];
            }
            double d = cpu_now() - t0;
            if (d < best) best = d;
        }
        printf("random loads, %6zu KiB: %5.0f M/s\n", k >> 10, N / best / 1e6);
        free(t);
    }

    {
        uint8_t *ar = huge(arena);
        uint32_t *r4 = huge(65536 * 4);
        uint64_t *r8 = huge(65536 * 8);
        for (i = 0; i < 65536; i++) {          /* each /16 names a random line */
            s ^= s << 13; s ^= s >> 7; s ^= s << 17;
            r4[i] = (uint32_t)((s % (arena / 64 - 1)) * 64);
            r8[i] = (uint64_t)(uintptr_t)(ar + r4[i]);
        }
        for (root = 8; root >= 4; root -= 4) {
            double best = 1e9;
            for (rep = 0; rep < 3; rep++) {
                double t0 = cpu_now();
                for (i = 0; i + 24 < N; i++) {
                    const uint8_t *c;
                    if (root == 8) {
                        __builtin_prefetch(&r8[q[i + 24] >> 16]);
                        __builtin_prefetch((const void *)(uintptr_t)r8[q[i + 8] >> 16]);
                        c = (const uint8_t *)(uintptr_t)r8[q[i] >> 16];
                    } else {
                        __builtin_prefetch(&r4[q[i + 24] >> 16]);
                        __builtin_prefetch(ar + r4[q[i + 8] >> 16]);
                        c = ar + r4[q[i] >> 16];
                    }
                    out[i] = c[(q[i] >> 10) & 63];
                }
                double d = cpu_now() - t0;
            if (d < best) best = d;
            }
            printf("root entry (%d bytes) + one line of a %zu MiB arena: %5.0f M/s\n",
                   root, arena >> 20, N / best / 1e6);
        }
    }
    printf("(checksum %llu)\n", (unsigned long long)(acc + out[N / 2]));
    return 0;
}
