// ublk-null: a minimal ublk server with a RAM backing, one queue, for the VM smoke test.
// It proves the kernel interface (control ring with SQE128, FETCH / COMMIT_AND_FETCH on a queue
// ring, START/STOP/DEL) and is the seed of native/'s shim.
//
//   ublk-null [-s MiB] [-d depth]
// Prints "ublk-null: ready /dev/ublkbN" once the block device is live; SIGINT/SIGTERM stops and
// deletes the device, then exits 0. Build: cc -O2 -Wall ublk-null.c -luring -lpthread
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <linux/ublk_cmd.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

// Newer UAPI bits, absent from older linux-libc-dev (Debian 12 ships the 6.1 header).
#ifndef UBLK_CMD_GET_FEATURES
#define UBLK_CMD_GET_FEATURES 0x13
#endif
#ifndef UBLK_F_CMD_IOCTL_ENCODE
#define UBLK_F_CMD_IOCTL_ENCODE (1ULL << 6)
#endif
#define U_CTRL(nr) _IOWR('u', (nr), struct ublksrv_ctrl_cmd)
#define U_IO(nr) _IOWR('u', (nr), struct ublksrv_io_cmd)

static int ioctl_encode;  // 1: ioctl-encoded opcodes (6.3+ and GET_FEATURES); 0: legacy (6.0-6.4)
static int ctrl_fd;
static struct io_uring ctrl_ring;

struct queue {
    int dev_id, q_id, depth, cdev_fd;
    unsigned buf_bytes;
    struct io_uring ring;
    struct ublksrv_io_desc *iods;
    size_t iods_len;
    char **bufs;
    pthread_t thread;
    volatile int stop;
    int ready_fd;  // pipe: written once all FETCH_REQs are submitted
};

static char *ram;
static uint64_t ram_bytes;

static void die(const char *what, int err) {
    fprintf(stderr, "ublk-null: %s: %s\n", what, strerror(err < 0 ? -err : err));
    exit(1);
}

static int ctrl_cmd(unsigned nr, int dev_id, void *buf, unsigned len, uint64_t data0) {
    struct io_uring_sqe *sqe = io_uring_get_sqe(&ctrl_ring);
    if (!sqe) return -EBUSY;
    memset(sqe, 0, 2 * sizeof(*sqe));  // SQE128
    sqe->opcode = IORING_OP_URING_CMD;
    sqe->fd = ctrl_fd;
    sqe->cmd_op = ioctl_encode ? (nr == UBLK_CMD_GET_FEATURES ? _IOR('u', nr, struct ublksrv_ctrl_cmd) : U_CTRL(nr)) : nr;
    struct ublksrv_ctrl_cmd *c = (struct ublksrv_ctrl_cmd *)sqe->cmd;
    c->dev_id = dev_id;
    c->queue_id = (uint16_t)-1;
    c->addr = (uint64_t)(uintptr_t)buf;
    c->len = len;
    c->data[0] = data0;
    int r = io_uring_submit(&ctrl_ring);
    if (r < 0) return r;
    struct io_uring_cqe *cqe;
    r = io_uring_wait_cqe(&ctrl_ring, &cqe);
    if (r < 0) return r;
    r = cqe->res;
    io_uring_cqe_seen(&ctrl_ring, cqe);
    return r;
}

static void queue_cmd(struct queue *q, unsigned nr, int tag, int result) {
    struct io_uring_sqe *sqe = io_uring_get_sqe(&q->ring);
    if (!sqe) { io_uring_submit(&q->ring); sqe = io_uring_get_sqe(&q->ring); }
    if (!sqe) { fprintf(stderr, "ublk-null: queue ring full\n"); exit(1); }
    memset(sqe, 0, sizeof(*sqe));
    sqe->opcode = IORING_OP_URING_CMD;
    sqe->fd = q->cdev_fd;
    sqe->cmd_op = ioctl_encode ? U_IO(nr) : nr;
    struct ublksrv_io_cmd *c = (struct ublksrv_io_cmd *)sqe->cmd;
    c->q_id = q->q_id;
    c->tag = tag;
    c->result = result;
    c->addr = (uint64_t)(uintptr_t)q->bufs[tag];
    sqe->user_data = tag;
}

static int handle(struct queue *q, int tag) {
    const struct ublksrv_io_desc *iod = &q->iods[tag];
    uint64_t off = iod->start_sector << 9, len = (uint64_t)iod->nr_sectors << 9;
    switch (ublksrv_get_op(iod)) {
    case UBLK_IO_OP_READ:
        if (off + len > ram_bytes) return -EIO;
        memcpy(q->bufs[tag], ram + off, len);
        return len;
    case UBLK_IO_OP_WRITE:
        if (off + len > ram_bytes) return -EIO;
        memcpy(ram + off, q->bufs[tag], len);
        return len;
    case UBLK_IO_OP_FLUSH:
        return 0;
    case UBLK_IO_OP_DISCARD:
    case UBLK_IO_OP_WRITE_ZEROES:
        if (off + len > ram_bytes) return -EIO;
        memset(ram + off, 0, len);
        return len;
    default:
        return -EOPNOTSUPP;
    }
}

static void *queue_loop(void *arg) {
    struct queue *q = arg;
    for (int t = 0; t < q->depth; t++) queue_cmd(q, UBLK_IO_FETCH_REQ, t, -1);
    io_uring_submit(&q->ring);
    (void)!write(q->ready_fd, "r", 1);
    int live = q->depth;
    while (live > 0 && !q->stop) {
        struct io_uring_cqe *cqe;
        struct __kernel_timespec ts = {.tv_sec = 0, .tv_nsec = 100 * 1000 * 1000};
        int r = io_uring_submit_and_wait_timeout(&q->ring, &cqe, 1, &ts, NULL);
        if (r == -ETIME || r == -EINTR) continue;
        if (r < 0) { fprintf(stderr, "ublk-null: queue wait: %s\n", strerror(-r)); break; }
        unsigned head, n = 0;
        io_uring_for_each_cqe(&q->ring, head, cqe) {
            int tag = (int)cqe->user_data;
            n++;
            if (cqe->res == UBLK_IO_RES_OK) {
                queue_cmd(q, UBLK_IO_COMMIT_AND_FETCH_REQ, tag, handle(q, tag));
            } else {
                live--;  // UBLK_IO_RES_ABORT (-ENODEV) or an error: this tag is done
                if (cqe->res != UBLK_IO_RES_ABORT)
                    fprintf(stderr, "ublk-null: tag %d: %s\n", tag, strerror(-cqe->res));
            }
        }
        io_uring_cq_advance(&q->ring, n);
    }
    return NULL;
}

int main(int argc, char **argv) {
    unsigned mib = 64, depth = 64;
    int opt;
    while ((opt = getopt(argc, argv, "s:d:")) != -1) {
        if (opt == 's') mib = atoi(optarg);
        else if (opt == 'd') depth = atoi(optarg);
        else { fprintf(stderr, "usage: ublk-null [-s MiB] [-d depth]\n"); return 2; }
    }
    // SIGINT/SIGTERM blocked in every thread, taken by sigwait() in main.
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    ram_bytes = (uint64_t)mib << 20;
    ram = mmap(NULL, ram_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (ram == MAP_FAILED) die("mmap ram", errno);

    ctrl_fd = open("/dev/ublk-control", O_RDWR | O_CLOEXEC);
    if (ctrl_fd < 0) die("/dev/ublk-control", errno);
    int r = io_uring_queue_init(4, &ctrl_ring, IORING_SETUP_SQE128);
    if (r < 0) die("io_uring_queue_init(SQE128)", r);

    // Feature probe: GET_FEATURES exists only with the ioctl encoding (6.5+); else legacy opcodes.
    uint64_t features = 0;
    ioctl_encode = 1;
    r = ctrl_cmd(UBLK_CMD_GET_FEATURES, -1, &features, sizeof(features), 0);
    if (r < 0) { ioctl_encode = 0; features = 0; }
    printf("ublk-null: %s command encoding, features 0x%llx\n", ioctl_encode ? "ioctl" : "legacy",
           (unsigned long long)features);

    struct ublksrv_ctrl_dev_info info = {0};
    info.nr_hw_queues = 1;
    info.queue_depth = depth;
    info.max_io_buf_bytes = 512 << 10;
    info.dev_id = (uint32_t)-1;
    info.flags = ioctl_encode ? UBLK_F_CMD_IOCTL_ENCODE : 0;
    r = ctrl_cmd(UBLK_CMD_ADD_DEV, -1, &info, sizeof(info), 0);
    if (r < 0) die("ADD_DEV", r);
    int dev_id = info.dev_id;

    struct ublk_params p = {0};
    p.len = sizeof(p);
    p.types = UBLK_PARAM_TYPE_BASIC;
    p.basic.logical_bs_shift = 9;
    p.basic.physical_bs_shift = 12;
    p.basic.io_opt_shift = 12;
    p.basic.io_min_shift = 9;
    p.basic.max_sectors = info.max_io_buf_bytes >> 9;
    p.basic.dev_sectors = ram_bytes >> 9;
    r = ctrl_cmd(UBLK_CMD_SET_PARAMS, dev_id, &p, sizeof(p), 0);
    if (r < 0) die("SET_PARAMS", r);

    struct queue q = {.dev_id = dev_id, .q_id = 0, .depth = info.queue_depth, .buf_bytes = info.max_io_buf_bytes};
    char path[64];
    snprintf(path, sizeof(path), "/dev/ublkc%d", dev_id);
    for (int i = 0; i < 100 && (q.cdev_fd = open(path, O_RDWR | O_CLOEXEC)) < 0; i++) usleep(10000);
    if (q.cdev_fd < 0) die(path, errno);
    long pg = sysconf(_SC_PAGESIZE);
    q.iods_len = ((q.depth * sizeof(struct ublksrv_io_desc)) + pg - 1) / pg * pg;
    q.iods = mmap(NULL, q.iods_len, PROT_READ, MAP_SHARED | MAP_POPULATE, q.cdev_fd, UBLKSRV_CMD_BUF_OFFSET);
    if (q.iods == MAP_FAILED) die("mmap io descriptors", errno);
    q.bufs = calloc(q.depth, sizeof(char *));
    for (int t = 0; t < q.depth; t++)
        if (posix_memalign((void **)&q.bufs[t], pg, q.buf_bytes)) die("buffers", ENOMEM);
    r = io_uring_queue_init(q.depth * 2, &q.ring, 0);
    if (r < 0) die("queue io_uring", r);
    int pfd[2];
    if (pipe(pfd)) die("pipe", errno);
    q.ready_fd = pfd[1];
    pthread_create(&q.thread, NULL, queue_loop, &q);
    char c;
    (void)!read(pfd[0], &c, 1);  // FETCH_REQs submitted: START_DEV may now send I/O

    r = ctrl_cmd(UBLK_CMD_START_DEV, dev_id, NULL, 0, getpid());
    if (r < 0) die("START_DEV", r);
    printf("ublk-null: ready /dev/ublkb%d (%u MiB, depth %u)\n", dev_id, mib, q.depth);
    fflush(stdout);

    int sig;
    sigwait(&sigs, &sig);

    r = ctrl_cmd(UBLK_CMD_STOP_DEV, dev_id, NULL, 0, 0);
    if (r < 0) fprintf(stderr, "ublk-null: STOP_DEV: %s\n", strerror(-r));
    q.stop = 1;
    pthread_join(q.thread, NULL);
    io_uring_queue_exit(&q.ring);  // cancels the outstanding FETCH_REQs
    munmap(q.iods, q.iods_len);
    close(q.cdev_fd);
    r = ctrl_cmd(UBLK_CMD_DEL_DEV, dev_id, NULL, 0, 0);
    if (r < 0) die("DEL_DEV", r);
    printf("ublk-null: deleted /dev/ublkb%d\n", dev_id);
    io_uring_queue_exit(&ctrl_ring);
    close(ctrl_fd);
    return 0;
}
