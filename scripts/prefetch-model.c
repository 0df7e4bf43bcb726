/* A model of weft's heap walk, for choosing how to prefetch tuples
 * (pgext/src/storage/deform.rs). 8 kB pages of 152-byte tuples, filled
 * from the page's end down as Postgres fills them, in a 4 GB pool, read in
 * random page order as a buffer pool holds them; each tuple walked as a
 * chain of 10 dependent one-byte loads after its 24-byte header. The last
 * way also asks for the next page while walking this one, as
 * deform::Lookahead does.
 *
 *   gcc -O2 -o /tmp/prefetch-model scripts/prefetch-model.c && /tmp/prefetch-model
 *
 * Prints ns a tuple for each way of prefetching (best of 2 runs). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <xmmintrin.h>

#define PAGE 8192
#define TUPLE 152
#define HEADER 24

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

/* page: the page's tuples asked for at once when it is read; ahead, lines:
 * each tuple's first lines asked for that many tuples ahead; next: lines
 * of the next page asked for per tuple walked (deform::Lookahead). */
struct way { const char *name; int page; int ahead; int lines; int next; };

int main(void) {
    size_t pages = (4UL << 30) / PAGE, visits = 112000;
    uint8_t *pool = mmap(0, pages * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (pool == MAP_FAILED) { perror("mmap"); return 1; }
    int tuples = (PAGE - HEADER) / (TUPLE + 4);
    for (size_t p = 0; p < pages; p++) {
        uint8_t *page = pool + p * PAGE;
        uint16_t *lp = (uint16_t *)(page + HEADER);
        for (int t = 0; t < tuples; t++) {
            lp[t] = PAGE - (t + 1) * TUPLE;
            page[lp[t] + 18] = t & 7;
            for (int b = HEADER; b < TUPLE; b += 8) page[lp[t] + b] = 1 + (b & 3);
        }
    }
    size_t *order = malloc(visits * sizeof *order);
    srand(1);
    for (size_t i = 0; i < visits; i++) order[i] = ((size_t)rand() * 7919 + rand()) % pages;
    struct way ways[] = {
        {"nothing prefetched", 0, 0, 0, 0},
        {"the page's tuples at once", 1, 0, 0, 0},
        {"each tuple 8 ahead, 1 line", 0, 8, 1, 0},
        {"each tuple 5 ahead, 2 lines", 0, 5, 2, 0},
        {"each tuple 10 ahead, 2 lines", 0, 10, 2, 0},
        {"page, and each tuple 10 ahead, 2 lines", 1, 10, 2, 0},
        {"page, tuple, next page 3 lines a tuple", 1, 10, 2, 3},
    };
    for (size_t w = 0; w < sizeof ways / sizeof *ways; w++) {
        double best = 1e9;
        uint64_t sum = 0;
        for (int run = 0; run < 2; run++) {
            double start = now();
            for (size_t i = 0; i < visits; i++) {
                uint8_t *page = pool + order[i] * PAGE;
                uint16_t *lp = (uint16_t *)(page + HEADER);
                uint8_t *next = pool + order[(i + 1) % visits] * PAGE;
                int asked = 0;
                if (ways[w].page)
                    for (int at = PAGE - 64; at >= PAGE - tuples * TUPLE; at -= 64)
                        _mm_prefetch((char *)page + at, _MM_HINT_T0);
                for (int t = 0; t < tuples; t++) {
                    /* The next page's header lines first, then from its
                     * end down, as the walk will read it. */
                    for (int k = 0; k < ways[w].next && asked < PAGE / 64; k++, asked++) {
                        int line = asked < 4 ? asked : PAGE / 64 - 1 - (asked - 4);
                        _mm_prefetch((char *)next + 64 * line, _MM_HINT_T0);
                    }
                    if (ways[w].ahead && t + ways[w].ahead < tuples)
                        for (int l = 0; l < ways[w].lines; l++)
                            _mm_prefetch((char *)page + lp[t + ways[w].ahead] + 64 * l, _MM_HINT_T0);
                    uint8_t *tuple = page + lp[t];
                    int off = HEADER + (tuple[18] & 7);
                    for (int a = 0; a < 10; a++) off += 1 + (tuple[off] & 3);
                    sum += off;
                }
            }
            double ns = (now() - start) * 1e9 / (visits * tuples);
            if (ns < best) best = ns;
        }
        printf("%-40s %5.1f ns a tuple (%lu)\n", ways[w].name, best, (unsigned long)sum);
    }
    return 0;
}
