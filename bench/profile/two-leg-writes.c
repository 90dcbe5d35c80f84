// Two legs' 4 KiB buffered writes, the way the mirror's write path could issue them: two pwrite
// calls, or one io_uring_enter with two SQEs (and one SQE, for scale). Random offsets in two
// pre-filled 512 MiB files in DIR (same filesystem as the legs); us per mirrored write, wall and
// CPU of this process (io-wq workers are threads of it, so their CPU counts too).
//   gcc -O2 -o /tmp/two-leg-writes bench/profile/two-leg-writes.c -luring && /tmp/two-leg-writes /var/tmp
#define _GNU_SOURCE
#include <fcntl.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SIZE (512L << 20)
#define BS 4096
#define N 400000

static double clk(clockid_t c) {
    struct timespec t;
    clock_gettime(c, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static int wr(int fd, const char *buf, long off) {
    if (pwrite(fd, buf, BS, off) != BS) { perror("pwrite"); return -1; }
    return 0;
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : "/var/tmp";
    char pa[4096], pb[4096];
    snprintf(pa, sizeof pa, "%s/two-leg-a.%d", dir, getpid());
    snprintf(pb, sizeof pb, "%s/two-leg-b.%d", dir, getpid());
    int a = open(pa, O_RDWR | O_CREAT | O_EXCL, 0600), b = open(pb, O_RDWR | O_CREAT | O_EXCL, 0600);
    if (a < 0 || b < 0) { perror("open"); return 1; }
    unlink(pa);
    unlink(pb); // gone when we exit, whatever happens
    char *buf;
    if (posix_memalign((void **)&buf, BS, BS)) return 1;
    memset(buf, 7, BS);
    long blocks = SIZE / BS;
    for (long i = 0; i < blocks; i++) // every page in the page cache first (no first-touch cost)
        if (wr(a, buf, i * BS) || wr(b, buf, i * BS)) return 1;
    struct io_uring ring;
    if (io_uring_queue_init(8, &ring, 0)) { fprintf(stderr, "io_uring_queue_init failed\n"); return 1; }
    const char *names[] = {"pwrite, one leg", "pwrite x 2 (both legs)", "io_uring, 2 SQEs, 1 enter", "io_uring, 1 SQE (one leg)"};
    unsigned seed = 1;
    for (int mode = 0; mode < 4; mode++) {
        for (int round = 0; round < 2; round++) { // round 0 warms up
            double t0 = clk(CLOCK_MONOTONIC), c0 = clk(CLOCK_PROCESS_CPUTIME_ID);
            for (int i = 0; i < N; i++) {
                seed = seed * 1103515245 + 12345;
                long off = (long)((seed >> 4) % blocks) * BS;
                if (mode == 0) {
                    if (wr(a, buf, off)) return 1;
                } else if (mode == 1) {
                    if (wr(a, buf, off) || wr(b, buf, off)) return 1;
                } else {
                    int want = mode == 2 ? 2 : 1;
                    io_uring_prep_write(io_uring_get_sqe(&ring), a, buf, BS, off);
                    if (want == 2) io_uring_prep_write(io_uring_get_sqe(&ring), b, buf, BS, off);
                    io_uring_submit_and_wait(&ring, want);
                    for (int j = 0; j < want; j++) {
                        struct io_uring_cqe *e;
                        if (io_uring_wait_cqe(&ring, &e) || e->res != BS) { fprintf(stderr, "io_uring write failed\n"); return 1; }
                        io_uring_cqe_seen(&ring, e);
                    }
                }
            }
            double t1 = clk(CLOCK_MONOTONIC), c1 = clk(CLOCK_PROCESS_CPUTIME_ID);
            if (round == 1) printf("%-28s %6.2f us/write wall, %6.2f us/write CPU\n", names[mode], (t1 - t0) / N * 1e6, (c1 - c0) / N * 1e6);
        }
    }
    return 0;
}
