// libublkmirror: the thin C shim between the Linux ublk driver and the Java frontend
// (org.ublkmirror.frontend.ublk). Kernel structures and calls live here; every decision (which
// device, which features, recovery or not, what a request means for the mirror) is Java's.
//
// Control plane: one io_uring (SQE128) on /dev/ublk-control, one command at a time (mutex).
// Data plane: per queue one io_uring, driven only by the Java thread that owns the queue (the
// kernel requires the task that fetched a tag to commit it). Java calls ubm_queue_next() once
// per batch: it submits the commits for completed requests, waits, and returns the batch of
// new request descriptors. Worker threads finishing requests call ubm_queue_wake(), which
// writes an eventfd whose read is kept posted in the queue ring, so the wait ends.
#define _GNU_SOURCE
#include "ublkmirror.h"

#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <linux/magic.h>
#include <linux/ublk_cmd.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

// UAPI newer than the 6.1 <linux/ublk_cmd.h> Debian 12's linux-libc-dev ships.
#ifndef UBLK_CMD_GET_DEV_INFO2
#define UBLK_CMD_GET_DEV_INFO2 0x12 // 6.2
#endif
#ifndef UBLK_CMD_GET_FEATURES
#define UBLK_CMD_GET_FEATURES 0x13  // 6.5
#endif
#ifndef UBLK_F_CMD_IOCTL_ENCODE
#define UBLK_F_CMD_IOCTL_ENCODE (1ULL << 6) // 6.4
#endif
#ifndef UBLK_F_USER_COPY
#define UBLK_F_USER_COPY (1ULL << 7) // 6.5: request data by pread/pwrite on /dev/ublkcN
#endif
#ifndef UBLK_F_AUTO_BUF_REG
#define UBLK_F_AUTO_BUF_REG (1ULL << 11) // 6.16: request pages registered as a fixed buffer
#endif
#ifndef UBLK_IO_F_NEED_REG_BUF
#define UBLK_IO_F_NEED_REG_BUF (1U << 17) // auto registration failed (with the FALLBACK flag)
#endif
#define UBM_AUTO_BUF_REG_FALLBACK 1       // UBLK_AUTO_BUF_REG_FALLBACK: deliver even if it fails
// User copy: the request (q, tag) is at this offset of /dev/ublkcN (6.5+, all versions since).
#define UBM_IO_BUF_OFFSET 0x80000000ULL
#define UBM_TAG_OFF 25
#define UBM_QID_OFF (25 + 16)

// io descriptors of queue q sit at this offset of /dev/ublkcN: the kernel divides the mmap
// offset by the size of a full-depth (4096) descriptor array to find the queue (all versions).
static size_t cmd_buf_size(unsigned depth) {
    long pg = sysconf(_SC_PAGESIZE);
    size_t sz = depth * sizeof(struct ublksrv_io_desc);
    return (sz + pg - 1) / pg * pg;
}

// ---------------------------------------------------------------------------------- control

struct ubm_ctrl {
    int fd;
    int ioctl_encode;  // 1: ioctl-encoded opcodes (_IOWR('u', nr, ...)); 0: legacy raw numbers
    int64_t features;  // GET_FEATURES result, or -errno where the kernel has none
    struct io_uring ring;
    pthread_mutex_t lock;
};

// The opcode for control command nr in the encoding the kernel speaks.
static unsigned ctrl_op(const struct ubm_ctrl *c, unsigned nr) {
    // 6.0-6.3 know only the legacy opcodes (the bare numbers). 6.4 added the ioctl encoding
    // (UBLK_F_CMD_IOCTL_ENCODE) and kept the legacy one behind CONFIG_BLKDEV_UBLK_LEGACY_OPCODES.
    if (!c->ioctl_encode) return nr;
    switch (nr) {
    case UBLK_CMD_GET_QUEUE_AFFINITY:
    case UBLK_CMD_GET_DEV_INFO:
    case UBLK_CMD_GET_PARAMS:
    case UBLK_CMD_GET_DEV_INFO2:
    case UBLK_CMD_GET_FEATURES:
        return _IOR('u', nr, struct ublksrv_ctrl_cmd);
    default:
        return _IOWR('u', nr, struct ublksrv_ctrl_cmd);
    }
}

static int ctrl_cmd(struct ubm_ctrl *c, unsigned nr, int dev_id, void *buf, unsigned len, uint64_t data0) {
    pthread_mutex_lock(&c->lock);
    struct io_uring_sqe *sqe = io_uring_get_sqe(&c->ring);
    int r;
    if (!sqe) { r = -EBUSY; goto out; }
    memset(sqe, 0, 2 * sizeof(*sqe));  // SQE128: the command area spans the second half
    sqe->opcode = IORING_OP_URING_CMD;
    sqe->fd = c->fd;
    sqe->cmd_op = ctrl_op(c, nr);
    struct ublksrv_ctrl_cmd *cmd = (struct ublksrv_ctrl_cmd *)sqe->cmd;
    cmd->dev_id = dev_id;
    cmd->queue_id = (uint16_t)-1;
    cmd->addr = (uint64_t)(uintptr_t)buf;
    cmd->len = len;
    cmd->data[0] = data0;
    r = io_uring_submit(&c->ring);
    if (r < 0) goto out;
    struct io_uring_cqe *cqe;
    do { r = io_uring_wait_cqe(&c->ring, &cqe); } while (r == -EINTR);
    if (r < 0) goto out;
    r = cqe->res;
    io_uring_cqe_seen(&c->ring, cqe);
out:
    pthread_mutex_unlock(&c->lock);
    return r;
}

struct ubm_ctrl *ubm_ctrl_open(int *err) {
    struct ubm_ctrl *c = calloc(1, sizeof(*c));
    if (!c) { *err = -ENOMEM; return NULL; }
    c->fd = open("/dev/ublk-control", O_RDWR | O_CLOEXEC);
    if (c->fd < 0) { *err = -errno; free(c); return NULL; }
    // Control commands carry an 80-byte payload: they need 128-byte SQEs (all versions).
    int r = io_uring_queue_init(4, &c->ring, IORING_SETUP_SQE128);
    if (r < 0) { *err = r; close(c->fd); free(c); return NULL; }
    pthread_mutex_init(&c->lock, NULL);
    // Feature probe. GET_FEATURES exists from 6.5 and only in the ioctl encoding; when it
    // fails (6.0-6.4), speak the legacy encoding, which every ublk kernel accepts (6.4+ only
    // with CONFIG_BLKDEV_UBLK_LEGACY_OPCODES=y, the default).
    // UBLK_MIRROR_UBLK_ENCODING=legacy skips the probe and speaks the legacy encoding, as on a
    // 6.0-6.4 kernel: the VM tests prove that path on their 6.12 kernel (legacy opcodes built in).
    uint64_t f = 0;
    c->ioctl_encode = 1;
    const char *enc = getenv("UBLK_MIRROR_UBLK_ENCODING");
    if (enc && strcmp(enc, "legacy") == 0)
        r = -EOPNOTSUPP;
    else
        r = ctrl_cmd(c, UBLK_CMD_GET_FEATURES, -1, &f, sizeof(f), 0);
    if (r < 0) {
        c->ioctl_encode = 0;
        c->features = r;
    } else {
        c->features = (int64_t)f;
    }
    *err = 0;
    return c;
}

void ubm_ctrl_close(struct ubm_ctrl *c) {
    if (!c) return;
    io_uring_queue_exit(&c->ring);
    close(c->fd);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

int ubm_ctrl_ioctl_encode(struct ubm_ctrl *c) { return c->ioctl_encode; }

int64_t ubm_ctrl_features(struct ubm_ctrl *c) { return c->features; }

int ubm_add_dev(struct ubm_ctrl *c, int dev_id, int queues, int depth, int max_io_bytes, uint64_t flags) {
    struct ublksrv_ctrl_dev_info info;
    memset(&info, 0, sizeof(info));
    info.nr_hw_queues = queues;
    info.queue_depth = depth;
    info.max_io_buf_bytes = max_io_bytes;
    info.dev_id = (uint32_t)dev_id;
    // The kernel reads the encoding the server speaks from this flag (6.4+); older ones drop it.
    info.flags = flags | (c->ioctl_encode ? UBLK_F_CMD_IOCTL_ENCODE : 0);
    // ADD_DEV: the command's dev_id must equal info.dev_id (-1: the kernel picks; all versions).
    int r = ctrl_cmd(c, UBLK_CMD_ADD_DEV, dev_id, &info, sizeof(info), 0);
    return r < 0 ? r : (int)info.dev_id;
}

int ubm_set_params(struct ubm_ctrl *c, int dev_id, uint64_t size_bytes, int lbs_shift, int pbs_shift,
                   int max_sectors, int attrs, int discard_granularity, int max_discard_sectors,
                   int max_write_zeroes_sectors) {
    struct ublk_params p;
    memset(&p, 0, sizeof(p));
    // len = the 6.1 structure (basic + discard); newer kernels take a shorter len as "only
    // these types" and zero the rest.
    p.len = sizeof(p);
    p.types = UBLK_PARAM_TYPE_BASIC;
    p.basic.attrs = attrs;
    p.basic.logical_bs_shift = lbs_shift;
    p.basic.physical_bs_shift = pbs_shift;
    p.basic.io_min_shift = lbs_shift;
    p.basic.io_opt_shift = pbs_shift;
    p.basic.max_sectors = max_sectors;
    p.basic.dev_sectors = size_bytes >> 9;
    if (max_discard_sectors > 0 || max_write_zeroes_sectors > 0) {
        p.types |= UBLK_PARAM_TYPE_DISCARD;
        p.discard.discard_granularity = discard_granularity;
        p.discard.max_discard_sectors = max_discard_sectors;
        p.discard.max_write_zeroes_sectors = max_write_zeroes_sectors;
        p.discard.max_discard_segments = 1;
    }
    return ctrl_cmd(c, UBLK_CMD_SET_PARAMS, dev_id, &p, sizeof(p), 0);
}

int ubm_get_info(struct ubm_ctrl *c, int dev_id, int64_t *out) {
    struct ublksrv_ctrl_dev_info info;
    memset(&info, 0, sizeof(info));
    int r = ctrl_cmd(c, UBLK_CMD_GET_DEV_INFO, dev_id, &info, sizeof(info), 0);
    if (r < 0) return r;
    out[0] = info.dev_id;
    out[1] = info.nr_hw_queues;
    out[2] = info.queue_depth;
    out[3] = info.state;
    out[4] = info.max_io_buf_bytes;
    out[5] = info.ublksrv_pid;
    out[6] = (int64_t)info.flags;
    return 0;
}

int ubm_get_dev_sectors(struct ubm_ctrl *c, int dev_id, int64_t *sectors, int *lbs_shift) {
    struct ublk_params p;
    memset(&p, 0, sizeof(p));
    p.len = sizeof(p);
    int r = ctrl_cmd(c, UBLK_CMD_GET_PARAMS, dev_id, &p, sizeof(p), 0);
    if (r < 0) return r;
    *sectors = (int64_t)p.basic.dev_sectors;
    *lbs_shift = p.basic.logical_bs_shift;
    return 0;
}

// START_DEV blocks until every queue has fetched every tag, then adds the disk and sends I/O
// (partition scan) at once: the queue threads must be in ubm_queue_next() already.
int ubm_start_dev(struct ubm_ctrl *c, int dev_id, int pid) {
    return ctrl_cmd(c, UBLK_CMD_START_DEV, dev_id, NULL, 0, (uint64_t)pid);
}

int ubm_stop_dev(struct ubm_ctrl *c, int dev_id) { return ctrl_cmd(c, UBLK_CMD_STOP_DEV, dev_id, NULL, 0, 0); }

// DEL_DEV: only after the queue rings and /dev/ublkcN are closed (it waits for them).
int ubm_del_dev(struct ubm_ctrl *c, int dev_id) { return ctrl_cmd(c, UBLK_CMD_DEL_DEV, dev_id, NULL, 0, 0); }

// START_USER_RECOVERY (6.1+, UBLK_F_USER_RECOVERY): -EBUSY until the old server's
// /dev/ublkcN is released and the device quiesced.
int ubm_start_recovery(struct ubm_ctrl *c, int dev_id) {
    return ctrl_cmd(c, UBLK_CMD_START_USER_RECOVERY, dev_id, NULL, 0, 0);
}

// END_USER_RECOVERY blocks, like START_DEV, until every tag is fetched again, then unquiesces.
int ubm_end_recovery(struct ubm_ctrl *c, int dev_id, int pid) {
    return ctrl_cmd(c, UBLK_CMD_END_USER_RECOVERY, dev_id, NULL, 0, (uint64_t)pid);
}

// The char device appears shortly after ADD_DEV (devtmpfs; udev may still be setting its mode).
int ubm_cdev_open(int dev_id) {
    char path[64];
    snprintf(path, sizeof(path), "/dev/ublkc%d", dev_id);
    int fd = -1;
    for (int i = 0; i < 300; i++) {
        fd = open(path, O_RDWR | O_CLOEXEC);
        if (fd >= 0 || (errno != ENOENT && errno != EACCES)) break;
        usleep(10000);
    }
    return fd >= 0 ? fd : -errno;
}

int ubm_close_fd(int fd) { return close(fd) < 0 ? -errno : 0; }

// ------------------------------------------------------------------------------------ queues

#define EVENT_DATA (~0ULL)

struct ubm_queue {
    int cdev_fd, q_id, depth, ioctl_encode;
    struct io_uring ring;
    struct ublksrv_io_desc *iods;
    size_t iods_len;
    uint64_t *bufs;       // per tag: the Java direct buffer's address
    int efd;              // eventfd the workers write
    uint64_t ebuf;        // its read target
    int event_armed;      // a read of efd is posted
    int live;             // tags still owned by the kernel (fetch posted)
    int started;
    // Zero-copy mode (zc: the device was added with USER_COPY | AUTO_BUF_REG): the kernel
    // registers each request's pages as fixed buffer `tag` of this ring; nothing is copied into
    // bufs[] by the kernel, and Java moves a request's data with ubm_queue_copy() (user copy).
    // Direct reads (a read source set, either mode): READs are served here, never reaching Java:
    // read from read_fd into the request's pages (zc: READ_FIXED) or into bufs[tag] (copying:
    // the kernel copies it into the request at the commit), then committed. Everything else,
    // and a direct read that fails or comes up short, goes to Java.
    int zc;
    int read_fd;          // -1: no direct reads
    int read_inline;      // memory file system: pread on this thread (see set_read_source)
    int64_t read_base;    // byte offset of sector 0 in read_fd
    int64_t read_limit;   // bytes readable from read_base
    // Zero copy with inline reads: read_fd mapped read-only, so an inline read is one pwrite into
    // the request from the mapping (one copy) instead of a pread into the tag's buffer and a
    // pwrite from it (two). read_map + read_map_delta is byte read_base of the file. NULL: none.
    uint8_t *read_map;
    size_t read_map_len;
    int64_t read_map_delta;
    uint64_t direct_reads, direct_fallbacks;
    // Copying mode: every tag's buffer is registered as fixed buffer `tag` of the ring
    // (ubm_queue_register_bufs), so direct reads use READ_FIXED into it and leg writes
    // WRITE_FIXED from it. In zc mode fixed buffer `tag` is the request's pages (auto-registered).
    int bufs_fixed;
    // Leg writes from the request's buffer (ubm_queue_write_fixed): CQEs of other kinds that come
    // while such a write is waited for are kept here, in order, and handled by the next
    // ubm_queue_next first.
    struct { uint64_t user_data; int32_t res; } *stash;
    int nstash, stash_cap;
    struct ubm_leg_write {
        int busy, completed, tag, fd;
        int32_t res;
        int64_t pos, len, done;
    } *lw;      // leg writes in flight: two per tag (each request's two legs, every tag at once)
    int nslots, slot_hint;
};

#define DIRECT_READ_BIT (1ULL << 32)
#define LEG_WRITE_BIT (1ULL << 33)

static unsigned io_op(const struct ubm_queue *q, unsigned nr) {
    // Same encoding rule as control commands (6.4+: ioctl encoding; before: bare numbers).
    return q->ioctl_encode ? _IOWR('u', nr, struct ublksrv_io_cmd) : nr;
}

struct ubm_queue *ubm_queue_open(int cdev_fd, int ioctl_encode, int q_id, int depth, int zc, int *err) {
    struct ubm_queue *q = calloc(1, sizeof(*q));
    if (!q) { *err = -ENOMEM; return NULL; }
    q->zc = zc ? 1 : 0;
    q->read_fd = -1;
    q->cdev_fd = cdev_fd;
    q->q_id = q_id;
    q->depth = depth;
    q->ioctl_encode = ioctl_encode;
    q->iods_len = cmd_buf_size(depth);
    off_t off = UBLKSRV_CMD_BUF_OFFSET + (off_t)q_id * cmd_buf_size(UBLK_MAX_QUEUE_DEPTH);
    q->iods = mmap(NULL, q->iods_len, PROT_READ, MAP_SHARED | MAP_POPULATE, cdev_fd, off);
    if (q->iods == MAP_FAILED) { *err = -errno; free(q); return NULL; }
    q->bufs = calloc(depth, sizeof(uint64_t));
    // every CQE that can be outstanding besides leg writes: one per tag (a fetch or commit, or a
    // direct read) and the eventfd read
    q->stash_cap = depth + 2;
    q->stash = calloc((size_t)q->stash_cap, sizeof(*q->stash));
    q->nslots = 2 * depth;
    q->lw = calloc((size_t)q->nslots, sizeof(*q->lw));
    q->efd = eventfd(0, EFD_CLOEXEC);
    if (!q->bufs || !q->stash || !q->lw || q->efd < 0) {
        *err = q->efd < 0 ? -errno : -ENOMEM;
        if (q->efd >= 0) close(q->efd);
        munmap(q->iods, q->iods_len);
        free(q->bufs);
        free(q->stash);
        free(q->lw);
        free(q);
        return NULL;
    }
    // depth commits + depth direct reads + the eventfd read fit in one submission
    unsigned entries = (unsigned)(2 * depth + 2);
    // (A single-issuer ring with deferred task work, IORING_SETUP_DEFER_TASKRUN, was measured
    // against this plain one on the 7.3 guest: within 3 %, bench/RESULTS.md; not taken.)
    int r = io_uring_queue_init(entries < 8 ? 8 : entries, &q->ring, 0);
    // AUTO_BUF_REG needs a sparse buffer table on the ring that fetches: slot `tag` per request.
    if (r == 0 && q->zc) {
        r = io_uring_register_buffers_sparse(&q->ring, (unsigned)depth);
        if (r < 0) io_uring_queue_exit(&q->ring);
    }
    if (r < 0) {
        *err = r;
        close(q->efd);
        munmap(q->iods, q->iods_len);
        free(q->bufs);
        free(q->stash);
        free(q->lw);
        free(q);
        return NULL;
    }
    *err = 0;
    return q;
}

int ubm_queue_set_buf(struct ubm_queue *q, int tag, uint64_t addr) {
    if (tag < 0 || tag >= q->depth) return -EINVAL;
    q->bufs[tag] = addr;
    return 0;
}

// Before ubm_queue_fetch_all: reads of this queue are served here from fd (sector 0 at byte base,
// limit bytes), without Java. Either mode (copying: needs every tag's buffer set); fd -1 turns it off.
// Returns how: UBM_READ_URING (an io_uring read, completed in the ring), UBM_READ_INLINE or _MAPPED (tmpfs or
// ramfs: a pread on the queue thread; where the destination is a fixed buffer, zero copy or
// registered tag buffers, only reads up to INLINE_FIXED_MAX, the rest READ_FIXED), 0 (off), or -errno.
// Why inline there: tmpfs cannot say "would block" (no FMODE_NOWAIT: RWF_NOWAIT gets EOPNOTSUPP),
// so io_uring hands every read of it to an io-wq worker thread, one more thread hop per read; yet
// such a read is a copy out of memory that never waits for a device. Every other file system and
// block device keeps the io_uring read, which is completed at submission when the data is cached
// and waits in the kernel, not on this thread, when it is not. allow_inline 0 keeps io_uring for
// tmpfs too (UBLK_MIRROR_DIRECT_READS=uring, to compare). In zero-copy mode an inline read is a
// pwrite into the request through /dev/ublkcN from a mapping of fd (UBM_READ_MAPPED; one copy) or,
// without the mapping (UBM_READ_NO_MAP), a pread into the tag's buffer first (two): cheaper than
// the thread hop for small reads, not for large ones, hence INLINE_FIXED_MAX. In the copying mode with
// registered tag buffers, READ_FIXED copies with the kernel's memcpy into pinned pages where the
// pread copies to user memory (copy_to_user, which TCG emulates a byte at a time): the same
// threshold. allow_inline 2 reads inline at every size (UBLK_MIRROR_DIRECT_READS=inline, to compare).
static void unmap_read_source(struct ubm_queue *q) {
    if (q->read_map) munmap(q->read_map, q->read_map_len);
    q->read_map = NULL;
    q->read_map_len = 0;
    q->read_map_delta = 0;
}

int ubm_queue_set_read_source(struct ubm_queue *q, int fd, int64_t base, int64_t limit, int allow_inline) {
    if (q->started) return -EBUSY;
    if (fd >= 0 && (base < 0 || limit < 0)) return -EINVAL;
    unmap_read_source(q);
    q->read_fd = fd;
    q->read_base = base;
    q->read_limit = limit;
    q->read_inline = 0;
    if (fd < 0) return 0;
    int no_map = allow_inline & UBM_READ_NO_MAP;
    allow_inline &= ~UBM_READ_NO_MAP;
    struct statfs sfs;
    int bufs_set = 1;  // the inline read goes through the tag's buffer, in either mode
    for (int t = 0; t < q->depth; t++) bufs_set &= q->bufs[t] != 0;
    if (allow_inline && bufs_set && fstatfs(fd, &sfs) == 0 && (sfs.f_type == TMPFS_MAGIC || sfs.f_type == RAMFS_MAGIC))
        q->read_inline = allow_inline == 2 ? 2 : 1;
    if (!q->read_inline) return UBM_READ_URING;
    // Zero copy: map the source, read-only and shared (the page cache itself, so every write to
    // the file is seen at once, as a pread would see it). Not populated: pages are faulted in as
    // reads first touch them. A read past the file's end (cut under the server) faults inside
    // the pwrite, which then fails with EFAULT (no signal: the fault is the kernel's), and the
    // read falls back to Java like a short pread. Where the mapping cannot be made, the pread stays.
    if (q->zc && !no_map && limit > 0) {
        long pg = sysconf(_SC_PAGESIZE);
        int64_t start = base - base % pg;
        size_t len = (size_t)(base - start + limit);
        void *m = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, (off_t)start);
        if (m != MAP_FAILED) {
            q->read_map = m;
            q->read_map_len = len;
            q->read_map_delta = base - start;
            return UBM_READ_MAPPED;
        }
    }
    return UBM_READ_INLINE;
}

#define INLINE_FIXED_MAX (64 << 10)

static int inline_read_fits(const struct ubm_queue *q, const struct ublksrv_io_desc *iod) {
    if (!q->read_inline) return 0;
    if (q->read_inline == 2 || !(q->zc || q->bufs_fixed)) return 1;
    return ((uint64_t)iod->nr_sectors << 9) <= INLINE_FIXED_MAX;
}

// A direct read on this thread (read_inline): the whole length into the tag's buffer (zero copy:
// then into the request), or straight from the mapped source into the request; or -1.
static int read_inline(struct ubm_queue *q, int tag, const struct ublksrv_io_desc *iod) {
    uint64_t off = (uint64_t)iod->start_sector << 9, len = (uint64_t)iod->nr_sectors << 9, done = 0;
    if (q->read_map)
        return ubm_queue_copy(q, tag, q->read_map + q->read_map_delta + off, (int64_t)len, 1) == (int64_t)len ? (int)len : -1;
    uint8_t *buf = (uint8_t *)(uintptr_t)q->bufs[tag];
    while (done < len) {
        ssize_t n = pread(q->read_fd, buf + done, len - done, (off_t)(q->read_base + off + done));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        done += (uint64_t)n;
    }
    if (q->zc && ubm_queue_copy(q, tag, buf, (int64_t)len, 1) != (int64_t)len) return -1;
    return (int)len;
}

// Zero-copy mode, from a worker while it owns tag: copies len bytes between buf and the
// request's pages (to_request 0: a WRITE's data into buf; 1: a READ's result out of buf).
// Returns len or a negative errno.
int64_t ubm_queue_copy(struct ubm_queue *q, int tag, void *buf, int64_t len, int to_request) {
    if (!q->zc) return -EOPNOTSUPP;
    if (tag < 0 || tag >= q->depth || len < 0) return -EINVAL;
    off_t base = (off_t)(UBM_IO_BUF_OFFSET + ((uint64_t)q->q_id << UBM_QID_OFF) + ((uint64_t)tag << UBM_TAG_OFF));
    int64_t done = 0;
    while (done < len) {
        ssize_t n = to_request ? pwrite(q->cdev_fd, (uint8_t *)buf + done, (size_t)(len - done), base + done)
                               : pread(q->cdev_fd, (uint8_t *)buf + done, (size_t)(len - done), base + done);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        if (n == 0) return -ENODATA;
        done += n;
    }
    return done;
}

// Counters of the direct reads: out[0] reads served here, out[1] handed to Java after a short or
// failed direct read.
void ubm_queue_stats(struct ubm_queue *q, int64_t *out) {
    out[0] = (int64_t)__atomic_load_n(&q->direct_reads, __ATOMIC_RELAXED);
    out[1] = (int64_t)__atomic_load_n(&q->direct_fallbacks, __ATOMIC_RELAXED);
}

static struct io_uring_sqe *get_sqe(struct ubm_queue *q) {
    struct io_uring_sqe *sqe = io_uring_get_sqe(&q->ring);
    if (!sqe) {
        io_uring_submit(&q->ring);
        sqe = io_uring_get_sqe(&q->ring);
    }
    return sqe;
}

static int prep_io(struct ubm_queue *q, unsigned nr, int tag, int result) {
    struct io_uring_sqe *sqe = get_sqe(q);
    if (!sqe) return -EBUSY;
    memset(sqe, 0, sizeof(*sqe));
    sqe->opcode = IORING_OP_URING_CMD;
    sqe->fd = q->cdev_fd;
    sqe->cmd_op = io_op(q, nr);
    struct ublksrv_io_cmd *c = (struct ublksrv_io_cmd *)sqe->cmd;
    c->q_id = q->q_id;
    c->tag = tag;
    c->result = result;
    if (q->zc) {
        // Zero copy: the SQE's own addr (not the command's) carries struct ublk_auto_buf_reg
        // {index = tag, flags = FALLBACK}: a request whose registration failed still comes,
        // marked UBLK_IO_F_NEED_REG_BUF. The command's addr stays 0 (user copy: no buffer).
        sqe->addr = (uint64_t)tag | ((uint64_t)UBM_AUTO_BUF_REG_FALLBACK << 16);
        c->addr = 0;
    } else {
        c->addr = q->bufs[tag];
    }
    sqe->user_data = (uint64_t)tag;
    return 0;
}

// A READ served here: the read source's bytes into the request's registered buffer (zero copy),
// or into the tag's buffer, which the kernel copies into the request at the commit.
static int prep_direct_read(struct ubm_queue *q, int tag, const struct ublksrv_io_desc *iod) {
    struct io_uring_sqe *sqe = get_sqe(q);
    if (!sqe) return -EBUSY;
    uint64_t off = (uint64_t)iod->start_sector << 9, len = (uint64_t)iod->nr_sectors << 9;
    if (q->zc)  // addr 0: an offset into the registered request buffer, not a user address
        io_uring_prep_read_fixed(sqe, q->read_fd, NULL, (unsigned)len, (uint64_t)q->read_base + off, tag);
    else if (q->bufs_fixed)  // the tag's buffer, registered: the kernel's memcpy, not copy_to_user
        io_uring_prep_read_fixed(sqe, q->read_fd, (void *)(uintptr_t)q->bufs[tag], (unsigned)len, (uint64_t)q->read_base + off, tag);
    else
        io_uring_prep_read(sqe, q->read_fd, (void *)(uintptr_t)q->bufs[tag], (unsigned)len, (uint64_t)q->read_base + off);
    sqe->user_data = DIRECT_READ_BIT | (uint64_t)tag;
    return 0;
}

static int arm_event(struct ubm_queue *q) {
    if (q->event_armed) return 0;
    struct io_uring_sqe *sqe = get_sqe(q);
    if (!sqe) return -EBUSY;
    io_uring_prep_read(sqe, q->efd, &q->ebuf, sizeof(q->ebuf), 0);
    sqe->user_data = EVENT_DATA;
    q->event_armed = 1;
    return 0;
}

// Posts FETCH_REQ for every tag (and the eventfd read) and submits them, from the queue's own
// thread. Returns 0; the caller may then START_DEV / END_USER_RECOVERY.
int ubm_queue_fetch_all(struct ubm_queue *q) {
    for (int t = 0; t < q->depth; t++) {
        if (!q->bufs[t] && !q->zc) return -EINVAL;
        int r = prep_io(q, UBLK_IO_FETCH_REQ, t, -1);
        if (r < 0) return r;
    }
    int r = arm_event(q);
    if (r < 0) return r;
    r = io_uring_submit(&q->ring);
    if (r < 0) return r;
    // A good fetch completes only when a request comes, and none can before START_DEV (or
    // END_USER_RECOVERY), which waits for every tag: a completion now is a refused fetch
    // (e.g. -EINVAL for a flag this kernel takes otherwise). Report it instead of letting
    // START_DEV wait forever.
    struct io_uring_cqe *cqe;
    // (a short wait rather than a peek: it also runs any task work the refusal left pending)
    struct __kernel_timespec ts0 = {.tv_sec = 0, .tv_nsec = 1000000};
    while (io_uring_wait_cqe_timeout(&q->ring, &cqe, &ts0) == 0) {
        int res = cqe->res;
        int ev = cqe->user_data == EVENT_DATA;
        io_uring_cqe_seen(&q->ring, cqe);
        if (ev) { q->event_armed = 0; continue; }
        if (res < 0) return res;
    }
    q->live = q->depth;
    q->started = 1;
    return 0;
}

// Any thread: ends a wait in ubm_queue_next().
int ubm_queue_wake(struct ubm_queue *q) {
    uint64_t one = 1;
    return write(q->efd, &one, sizeof(one)) == sizeof(one) ? 0 : -errno;
}

// One completion seen by ubm_queue_next (from the ring, or kept by ubm_queue_write_fixed): a new
// request goes into descs[*n], a direct read is committed (*internal), the eventfd read sets *woke.
static int handle_cqe(struct ubm_queue *q, uint64_t user_data, int32_t res, struct ubm_desc *descs, int *n,
                      int *woke, int *internal) {
    if (user_data == EVENT_DATA) {
        q->event_armed = 0;  // re-posted on the next call
        *woke = 1;
        return 0;
    }
    if (user_data & LEG_WRITE_BIT) return 0;  // never kept (collect_leg_writes records them in their slots)
    int tag = (int)(user_data & 0xffff);
    const struct ublksrv_io_desc *iod = &q->iods[tag];
    int r;
    if (user_data & DIRECT_READ_BIT) {
        if (res >= 0 && (uint64_t)res == (uint64_t)iod->nr_sectors << 9) {
            r = prep_io(q, UBLK_IO_COMMIT_AND_FETCH_REQ, tag, res);
            if (r < 0) return r;
            __atomic_store_n(&q->direct_reads, q->direct_reads + 1, __ATOMIC_RELAXED);  // one writer: no locked add
            *internal = 1;
            return 0;
        }
        __atomic_store_n(&q->direct_fallbacks, q->direct_fallbacks + 1, __ATOMIC_RELAXED);  // one writer: no locked add
    } else if (res != UBLK_IO_RES_OK) {
        // UBLK_IO_RES_ABORT (-ENODEV): the device is stopping (or the ring is being
        // cancelled); this tag will not come back. Other errors: a bad commit, same end.
        q->live--;
        return 0;
    } else if (q->read_fd >= 0 && (iod->op_flags & 0xff) == UBLK_IO_OP_READ
               && !(iod->op_flags & UBLK_IO_F_NEED_REG_BUF)
               && ((uint64_t)iod->start_sector + iod->nr_sectors) << 9 <= (uint64_t)q->read_limit) {
        if (!inline_read_fits(q, iod)) {
            r = prep_direct_read(q, tag, iod);
            if (r < 0) return r;
            *internal = 1;
            return 0;
        }
        int got = read_inline(q, tag, iod);
        if (got >= 0) {
            r = prep_io(q, UBLK_IO_COMMIT_AND_FETCH_REQ, tag, got);
            if (r < 0) return r;
            __atomic_store_n(&q->direct_reads, q->direct_reads + 1, __ATOMIC_RELAXED);  // one writer: no locked add
            *internal = 1;
            return 0;
        }
        __atomic_store_n(&q->direct_fallbacks, q->direct_fallbacks + 1, __ATOMIC_RELAXED);  // to Java, below
    }
    descs[*n].tag = tag;
    descs[*n].op_flags = iod->op_flags;
    descs[*n].nr_sectors = iod->nr_sectors;
    descs[*n].pad = 0;
    descs[*n].start_sector = iod->start_sector;
    (*n)++;
    return 0;
}

// One batch. done: ndone pairs {tag, result} to commit (COMMIT_AND_FETCH_REQ). Waits up to
// timeout_ms (<0: forever) for at least one event, then fills descs (max entries of
// struct ubm_desc) with the new requests. Returns their number (0: woken or timed out with
// none), or -ENODEV once the kernel has aborted every tag (device stopped), or -errno.
// With a read source: READs are read here (into the request's pages, or the tag's buffer) and
// committed without returning to Java (a wait that saw only those goes on waiting); a direct
// read that fails or comes up short is handed to Java like any request.
// Completions kept while a leg write was waited for (ubm_queue_write_fixed) come first; when
// they give anything, the call does not wait.
int ubm_queue_next(struct ubm_queue *q, const int32_t *done, int ndone, struct ubm_desc *descs, int max,
                   int timeout_ms) {
    if (!q->started) return -EINVAL;
    for (int i = 0; i < ndone; i++) {
        int r = prep_io(q, UBLK_IO_COMMIT_AND_FETCH_REQ, done[2 * i], done[2 * i + 1]);
        if (r < 0) return r;
    }
    int n = 0, woke = 0, internal = 0, r;
    int k = 0;
    for (; k < q->nstash && n < max; k++) {
        r = handle_cqe(q, q->stash[k].user_data, q->stash[k].res, descs, &n, &woke, &internal);
        if (r < 0) return r;
    }
    if (k > 0) {
        q->nstash -= k;
        memmove(q->stash, q->stash + k, (size_t)q->nstash * sizeof(*q->stash));
    }
    if (q->live <= 0 && n == 0) {
        if (internal) io_uring_submit(&q->ring);
        return -ENODEV;
    }
    r = arm_event(q);
    if (r < 0) return r;
    // something to return already: only collect what the ring holds now, without waiting
    int wait = !(n > 0 || woke);
    struct __kernel_timespec ts = {.tv_sec = timeout_ms / 1000, .tv_nsec = (long)(timeout_ms % 1000) * 1000000L};
    for (;;) {
        struct io_uring_cqe *cqe;
        if (wait) {
            r = io_uring_submit_and_wait_timeout(&q->ring, &cqe, 1, timeout_ms < 0 ? NULL : &ts, NULL);
            if (r == -ETIME || r == -EINTR) return 0;
        } else {
            r = io_uring_submit(&q->ring);
        }
        if (r < 0) return r;
        int more = 0;  // this round committed direct reads
        unsigned head, seen = 0;
        io_uring_for_each_cqe(&q->ring, head, cqe) {
            if (n >= max) break;  // the rest stays for the next call
            seen++;
            r = handle_cqe(q, cqe->user_data, cqe->res, descs, &n, &woke, &more);
            if (r < 0) return r;
        }
        io_uring_cq_advance(&q->ring, seen);
        internal |= more;
        if (!wait || n > 0 || woke || q->live <= 0 || !more) {
            // commits of direct reads go out now, not with the next call
            if (internal) io_uring_submit(&q->ring);
            break;
        }
        // only direct reads came: committed with the next wait's submission; wait on
    }
    if (n == 0 && q->live <= 0) return -ENODEV;
    return n;
}

// Before ubm_queue_fetch_all, copying mode: registers each tag's buffer (every one set, buf_len
// bytes) as fixed buffer `tag` of the ring (pinned; needs RLIMIT_MEMLOCK or CAP_IPC_LOCK), for
// READ_FIXED direct reads and ubm_queue_write_fixed. Zero copy: nothing to do (fixed buffer `tag`
// is the request's pages, registered by the kernel: AUTO_BUF_REG). Returns 0, or -errno (then
// reads and writes go through the buffers' addresses as before, and ubm_queue_write_fixed refuses).
int ubm_queue_register_bufs(struct ubm_queue *q, int64_t buf_len) {
    if (q->started) return -EBUSY;
    if (!q->zc) {
        if (buf_len <= 0) return -EINVAL;
        struct iovec *iov = calloc((size_t)q->depth, sizeof(*iov));
        if (!iov) return -ENOMEM;
        for (int t = 0; t < q->depth; t++) {
            if (!q->bufs[t]) { free(iov); return -EINVAL; }
            iov[t].iov_base = (void *)(uintptr_t)q->bufs[t];
            iov[t].iov_len = (size_t)buf_len;
        }
        int r = io_uring_register_buffers(&q->ring, iov, (unsigned)q->depth);
        free(iov);
        if (r < 0) return r;
        q->bufs_fixed = 1;
    }
    return 0;
}

// Leg writes from the request's buffer, from the queue's thread while Java serves the WRITE on
// tag (fetched, not yet committed): WRITE_FIXED of its len bytes to fd at pos from fixed buffer
// `tag` (see ubm_queue_register_bufs). The copy into the file is the kernel's memcpy from the
// pinned pages, not a copy_from_user of a Java buffer. ubm_queue_write_start queues one and
// returns its slot; ubm_queue_write_wait submits what is queued and waits for that slot
// (resubmitting the rest of a short write), so the two legs' writes, and those of every request
// of a batch, go to the kernel in one io_uring_enter and are in flight at once. Completions of
// other kinds that come meanwhile are kept for ubm_queue_next; a slot's completion is recorded in
// the slot. Every started write must be waited for before the tag is committed.
static int prep_leg_write(struct ubm_queue *q, int slot) {
    struct ubm_leg_write *w = &q->lw[slot];
    struct io_uring_sqe *sqe = get_sqe(q);
    if (!sqe) return -EBUSY;
    // zc: addr is an offset into the request's registered buffer; copying: an address inside the
    // registered tag buffer
    void *addr = q->zc ? (void *)(uintptr_t)w->done : (void *)(uintptr_t)(q->bufs[w->tag] + (uint64_t)w->done);
    io_uring_prep_write_fixed(sqe, w->fd, addr, (unsigned)(w->len - w->done), (uint64_t)(w->pos + w->done), w->tag);
    sqe->user_data = LEG_WRITE_BIT | ((uint64_t)slot << 16) | (uint64_t)w->tag;
    w->completed = 0;
    return 0;
}

// Returns the slot (>= 0), or -errno: -EOPNOTSUPP (no fixed buffers), -ENOBUFS (zc: the kernel
// could not register this request's pages, UBLK_IO_F_NEED_REG_BUF), -EBUSY (every slot in use);
// then nothing was started.
int ubm_queue_write_start(struct ubm_queue *q, int tag, int fd, int64_t pos, int64_t len) {
    if (!(q->zc || q->bufs_fixed) || !q->started) return -EOPNOTSUPP;
    if (tag < 0 || tag >= q->depth || len <= 0 || len > UINT32_MAX || pos < 0 || fd < 0) return -EINVAL;
    if (q->zc && (q->iods[tag].op_flags & UBLK_IO_F_NEED_REG_BUF)) return -ENOBUFS;
    int slot = -1;
    for (int i = 0; i < q->nslots; i++) {  // from the last slot taken: in-order use finds one at once
        int k = (q->slot_hint + i) % q->nslots;
        if (!q->lw[k].busy) { slot = k; break; }
    }
    if (slot < 0) return -EBUSY;
    q->slot_hint = (slot + 1) % q->nslots;
    struct ubm_leg_write *w = &q->lw[slot];
    *w = (struct ubm_leg_write){.busy = 1, .tag = tag, .fd = fd, .pos = pos, .len = len};
    int r = prep_leg_write(q, slot);
    if (r < 0) { w->busy = 0; return r; }
    return slot;  // queued: the next wait (or ubm_queue_next) submits it
}

// Collects the CQEs the ring holds: leg-write completions into their slots, the rest kept.
static int collect_leg_writes(struct ubm_queue *q) {
    struct io_uring_cqe *cqe;
    unsigned head, seen = 0;
    io_uring_for_each_cqe(&q->ring, head, cqe) {
        if (cqe->user_data & LEG_WRITE_BIT) {
            int slot = (int)((cqe->user_data >> 16) & 0xffff);
            if (slot < q->nslots && q->lw[slot].busy && !q->lw[slot].completed) {
                q->lw[slot].completed = 1;
                q->lw[slot].res = cqe->res;
            }
            seen++;
            continue;
        }
        if (q->nstash >= q->stash_cap) {  // cannot happen (see stash_cap); stop before losing one
            io_uring_cq_advance(&q->ring, seen);
            return -EOVERFLOW;
        }
        q->stash[q->nstash].user_data = cqe->user_data;
        q->stash[q->nstash].res = cqe->res;
        q->nstash++;
        seen++;
    }
    io_uring_cq_advance(&q->ring, seen);
    return 0;
}

// Waits for the write started in slot; returns its length, or -errno. Frees the slot.
int64_t ubm_queue_write_wait(struct ubm_queue *q, int slot) {
    if (slot < 0 || slot >= q->nslots || !q->lw[slot].busy) return -EINVAL;
    struct ubm_leg_write *w = &q->lw[slot];
    int64_t ret;
    for (;;) {
        while (!w->completed) {
            int r = io_uring_submit_and_wait(&q->ring, 1);
            if (r < 0 && r != -EINTR && r != -ETIME && r != -EAGAIN) { ret = r; goto out; }
            r = collect_leg_writes(q);
            if (r < 0) { ret = r; goto out; }
        }
        if (w->res < 0) { ret = w->res; goto out; }
        if (w->res == 0) { ret = -EIO; goto out; }
        w->done += w->res;
        if (w->done >= w->len) { ret = w->done; goto out; }
        int r = prep_leg_write(q, slot);  // a short write: the rest
        if (r < 0) { ret = r; goto out; }
    }
out:
    w->busy = 0;
    return ret;
}

// Both at once: start and wait. Returns len, or -errno (as ubm_queue_write_start's).
int64_t ubm_queue_write_fixed(struct ubm_queue *q, int tag, int fd, int64_t pos, int64_t len) {
    int slot = ubm_queue_write_start(q, tag, fd, pos, len);
    if (slot < 0) return slot;
    return ubm_queue_write_wait(q, slot);
}

int ubm_queue_live(struct ubm_queue *q) { return q->live; }

// From the queue's thread, after it stopped calling ubm_queue_next(): tearing the ring down
// cancels the fetches still posted.
void ubm_queue_close(struct ubm_queue *q) {
    if (!q) return;
    io_uring_queue_exit(&q->ring);
    munmap(q->iods, q->iods_len);
    unmap_read_source(q);
    close(q->efd);
    free(q->bufs);
    free(q->stash);
    free(q->lw);
    free(q);
}

int ubm_desc_size(void) { return (int)sizeof(struct ubm_desc); }

// ---- resync loops (see ublkmirror.h) ----

int ubm_loops_abi(void) { return UBM_LOOPS_ABI; }

int ubm_fadvise(int fd, int64_t off, int64_t len, int advice) {
    return -posix_fadvise(fd, off, len, advice);
}

static int64_t copy_rw(int fd_in, int64_t off_in, int fd_out, int64_t off_out, int64_t len, uint8_t *buf,
                       int64_t buflen) {
    if (buf == NULL || buflen <= 0) return -EINVAL;
    int64_t done = 0;
    while (done < len) {
        int64_t want = len - done < buflen ? len - done : buflen, got = 0;
        while (got < want) {
            ssize_t n = pread(fd_in, buf + got, (size_t)(want - got), off_in + done + got);
            if (n < 0) {
                if (errno == EINTR || errno == EAGAIN) continue;
                return -errno;
            }
            if (n == 0) return -ENODATA;
            got += n;
        }
        for (int64_t put = 0; put < got;) {
            ssize_t n = pwrite(fd_out, buf + put, (size_t)(got - put), off_out + done + put);
            if (n < 0) {
                if (errno == EINTR || errno == EAGAIN) continue;
                return -errno;
            }
            put += n;
        }
        done += got;
    }
    return done;
}

int64_t ubm_copy_range(int fd_in, int64_t off_in, int fd_out, int64_t off_out, int64_t len,
                       void *buf, int64_t buflen, int flags) {
    if (len < 0 || off_in < 0 || off_out < 0) return -EINVAL;
    int64_t done = 0;
    if (!(flags & UBM_COPY_NO_CFR)) {
        while (done < len) {
            loff_t i = off_in + done, o = off_out + done;
            ssize_t n = copy_file_range(fd_in, &i, fd_out, &o, (size_t)(len - done), 0);
            if (n < 0) {
                if (errno == EINTR || errno == EAGAIN) continue;
                if (errno == EXDEV || errno == EINVAL || errno == EOPNOTSUPP || errno == ENOSYS) break;
                return -errno;
            }
            if (n == 0) return -ENODATA;
            done += n;
        }
        if (done == len) return len;
    }
    int64_t r = copy_rw(fd_in, off_in + done, fd_out, off_out + done, len - done, buf, buflen);
    return r < 0 ? r : done + r;
}

struct ubm_scan {
    int64_t ps, pc, max, n, cap;
    int64_t *out;
};

static void scan_flush(struct ubm_scan *s) {
    if (s->pc > 0) {
        if (s->n < s->cap) {
            s->out[2 * s->n] = s->ps;
            s->out[2 * s->n + 1] = s->pc;
        }
        s->n++;
        s->pc = 0;
    }
}

// Adds the run [start, start+len): the closed form of Extents.coalesce adding each block in turn.
static void scan_run(struct ubm_scan *s, int64_t start, int64_t len) {
    if (s->pc > 0 && start == s->ps + s->pc && s->pc < s->max) {
        int64_t take = len < s->max - s->pc ? len : s->max - s->pc;
        s->pc += take;
        start += take;
        len -= take;
    }
    while (len > 0) {
        scan_flush(s);
        int64_t take = len < s->max ? len : s->max;
        s->ps = start;
        s->pc = take;
        start += take;
        len -= take;
    }
}

static inline uint16_t le16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static inline uint32_t le32(const uint8_t *p) { return (uint32_t)le16(p) | (uint32_t)le16(p + 2) << 16; }
static inline uint64_t le64(const uint8_t *p) { return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32; }

// One 32-bit portable RoaringBitmap at buf[*pos...]; values are base + (32-bit value).
static int scan_roaring32(struct ubm_scan *s, const uint8_t *buf, int64_t len, int64_t *pos, int64_t base) {
    int64_t p = *pos;
#define NEED(n) do { if ((n) < 0 || p + (int64_t)(n) > len) return -EINVAL; } while (0)
    NEED(4);
    uint32_t cookie = le32(buf + p);
    p += 4;
    int64_t size;
    const uint8_t *runflags = NULL;
    if ((cookie & 0xFFFF) == 12347) {
        size = (cookie >> 16) + 1;
        NEED((size + 7) / 8);
        runflags = buf + p;
        p += (size + 7) / 8;
    } else if (cookie == 12346) {
        NEED(4);
        size = le32(buf + p);
        p += 4;
        if (size > 65536) return -EINVAL;
    } else {
        return -EINVAL;
    }
    NEED(4 * size);
    const uint8_t *hdr = buf + p;
    p += 4 * size;
    if (runflags == NULL || size >= 4) { // offset header
        NEED(4 * size);
        p += 4 * size;
    }
    for (int64_t c = 0; c < size; c++) {
        int64_t cbase = base + ((int64_t)le16(hdr + 4 * c) << 16);
        int64_t card = (int64_t)le16(hdr + 4 * c + 2) + 1;
        if (runflags != NULL && (runflags[c / 8] >> (c % 8) & 1)) {
            NEED(2);
            int64_t nruns = le16(buf + p);
            p += 2;
            NEED(4 * nruns);
            for (int64_t r = 0; r < nruns; r++, p += 4)
                scan_run(s, cbase + le16(buf + p), (int64_t)le16(buf + p + 2) + 1);
        } else if (card <= 4096) {
            NEED(2 * card);
            int64_t rs = -1, rl = 0;
            for (int64_t i = 0; i < card; i++, p += 2) {
                int64_t v = cbase + le16(buf + p);
                if (rl > 0 && v == rs + rl) {
                    rl++;
                } else {
                    if (rl > 0) scan_run(s, rs, rl);
                    rs = v;
                    rl = 1;
                }
            }
            if (rl > 0) scan_run(s, rs, rl);
        } else {
            NEED(8192);
            for (int64_t i = 0; i < 1024; i++, p += 8) {
                uint64_t w = le64(buf + p);
                while (w) {
                    int t = __builtin_ctzll(w);
                    uint64_t x = ~(w >> t);
                    int l = x == 0 ? 64 : __builtin_ctzll(x);
                    scan_run(s, cbase + 64 * i + t, l);
                    w &= ~((l == 64 ? ~0ULL : (1ULL << l) - 1) << t);
                }
            }
        }
    }
#undef NEED
    *pos = p;
    return 0;
}

int64_t ubm_scan_portable64(const uint8_t *buf, int64_t len, int64_t max_blocks, int64_t *out, int64_t cap) {
    if (buf == NULL || len < 8 || max_blocks <= 0 || cap < 0 || (cap > 0 && out == NULL)) return -EINVAL;
    struct ubm_scan s = {.ps = 0, .pc = 0, .max = max_blocks, .n = 0, .cap = cap, .out = out};
    uint64_t buckets = le64(buf);
    int64_t pos = 8;
    for (uint64_t b = 0; b < buckets; b++) {
        if (pos + 4 > len) return -EINVAL;
        uint32_t high = le32(buf + pos);
        pos += 4;
        if (high & 0x80000000u) return -EINVAL; // block addresses are >= 0
        int r = scan_roaring32(&s, buf, len, &pos, (int64_t)high << 32);
        if (r < 0) return r;
    }
    if (pos != len) return -EINVAL;
    scan_flush(&s);
    return s.n;
}
