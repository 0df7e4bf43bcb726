/* What this machine's memory gives a scan: 1 GiB read once by 1 and by 2
 * threads, one load per cache line. The figure a heap walk is held
 * against: lineitem at SF1 is 946 MB.
 *
 *   gcc -O2 -pthread -o /tmp/membw scripts/membw.c && /tmp/membw
 *
 * Prints ms and GB/s for each thread count, best of 3. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BYTES (1UL << 30)
#define LINE_WORDS 8 /* 64-byte lines of 8-byte words */

static uint64_t *words;
static int threads;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

/* Thread `arg`'s share, one word of each line summed (returned so that
 * the loads are not optimized away). */
static void *read_share(void *arg) {
    size_t share = BYTES / sizeof *words / threads;
    const uint64_t *p = words + (size_t)arg * share;
    uint64_t sum = 0;
    for (size_t i = 0; i < share; i += LINE_WORDS) sum += p[i];
    return (void *)(uintptr_t)sum;
}

int main(void) {
    words = malloc(BYTES);
    if (!words) { perror("malloc"); return 1; }
    memset(words, 1, BYTES);
    for (threads = 1; threads <= 2; threads++) {
        double best = 1e9;
        for (int run = 0; run < 3; run++) {
            pthread_t t[2];
            double start = now();
            for (long i = 0; i < threads; i++) pthread_create(&t[i], 0, read_share, (void *)i);
            for (int i = 0; i < threads; i++) pthread_join(t[i], 0);
            double took = now() - start;
            if (took < best) best = took;
        }
        printf("%d thread(s): %.1f ms, %.1f GB/s\n", threads, best * 1e3, BYTES / best / 1e9);
    }
    return 0;
}
