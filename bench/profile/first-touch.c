// First touch of anonymous memory: mmap 2 GiB, write one byte per 4 KiB page, unmap; three rounds,
// ns per page. In a guest whose memory the host backs lazily, the first round is far slower.
//   gcc -O2 -o /tmp/first-touch bench/profile/first-touch.c && /tmp/first-touch
#include <stdio.h>
#include <sys/mman.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(void) {
    const size_t n = 2UL << 30, page = 4096;
    for (int r = 0; r < 3; r++) {
        char *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) {
            perror("mmap 2 GiB");
            return 1;
        }
        madvise(p, n, MADV_NOHUGEPAGE); // one fault per 4 KiB page, as the page cache takes them
        double t = now();
        for (size_t i = 0; i < n; i += page) p[i] = 1;
        printf("round %d: %.0f ns/page\n", r, (now() - t) * 1e9 / (n / page));
        munmap(p, n);
    }
    return 0;
}
