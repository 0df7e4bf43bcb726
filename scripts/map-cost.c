/* What a new process pays to read shared memory it did not map itself, as
 * each Postgres parallel worker reads the buffer pool (benches/README.md,
 * 'Conditions', huge pages). A parent maps 1 GiB of shared anonymous
 * memory (what Postgres's shared memory is) and touches all of it; a
 * forked child reads one byte of every 8 kB buffer (or of every fifth,
 * as sparse index lookups do), after asking the kernel to map the whole
 * range at once (MADV_POPULATE_READ) or not; the parent times the
 * child's exit too, which unmaps what it mapped.
 *
 *   gcc -O2 -o /tmp/map-cost scripts/map-cost.c && /tmp/map-cost
 *
 * Then the same in 2 MB pages, if enough are reserved. With 4 kB pages
 * every page costs the child a page table entry made on its first touch
 * and removed at exit. Prints ms for each case, best of 3. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22 /* Linux 5.14 */
#endif

#define BYTES (1UL << 30)
#define BUFFER 8192

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec * 1e-6;
}

/* One child's run over `memory`: the ms it spent populating and reading
 * (through a pipe), and the ms from the end of its reads to its reaping. */
static void child_run(volatile char *memory, size_t stride, int populate, double *work, double *exit_ms) {
    int fds[2];
    if (pipe(fds) != 0) {
        perror("pipe");
        exit(1);
    }
    pid_t pid = fork();
    if (pid == 0) {
        double start = now();
        if (populate && madvise((void *)memory, BYTES, MADV_POPULATE_READ) != 0)
            perror("madvise");
        long sum = 0;
        for (size_t at = 0; at < BYTES; at += stride * BUFFER)
            sum += memory[at];
        double times[2] = {now() - start, now()};
        if (write(fds[1], times, sizeof times) != sizeof times || sum < 0)
            _exit(1);
        _exit(0);
    }
    double times[2];
    if (read(fds[0], times, sizeof times) != sizeof times) {
        perror("read");
        exit(1);
    }
    waitpid(pid, NULL, 0);
    *work = times[0];
    *exit_ms = now() - times[1];
    close(fds[0]);
    close(fds[1]);
}

/* The child's runs over `memory` (just mapped, `page` names its pages). */
static void report(volatile char *memory, const char *page) {
    for (size_t at = 0; at < BYTES; at += 4096)
        memory[at] = 1;
    for (int populate = 0; populate <= 1; populate++) {
        for (size_t stride = 1; stride <= 5; stride += 4) {
            double best_work = 1e9, best_exit = 1e9;
            for (int run = 0; run < 3; run++) {
                double work, exit_ms;
                child_run(memory, stride, populate, &work, &exit_ms);
                if (work < best_work)
                    best_work = work;
                if (exit_ms < best_exit)
                    best_exit = exit_ms;
            }
            char what[64];
            snprintf(what, sizeof what, "%s, %s, every %zu%s buffer", page, populate ? "populated" : "faulted",
                     stride, stride == 1 ? "st" : "th");
            printf("%-44s %10.1f %10.1f\n", what, best_work, best_exit);
        }
    }
}

int main(void) {
    printf("%-44s %10s %10s\n", "1 GiB of shared memory, child", "read ms", "exit ms");
    volatile char *memory = mmap(NULL, BYTES, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (memory == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    report(memory, "4 kB pages");
    munmap((void *)memory, BYTES);
    /* Huge pages only if reserved (sysctl vm.nr_hugepages, 512 free). */
    memory = mmap(NULL, BYTES, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
    if (memory == MAP_FAILED)
        printf("2 MB pages: none reserved\n");
    else
        report(memory, "2 MB pages");
    return 0;
}
