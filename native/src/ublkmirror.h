// libublkmirror: see ublkmirror.c. Bound from Java by org.ublkmirror.frontend.ublk.UblkNative.
#ifndef UBLKMIRROR_H
#define UBLKMIRROR_H
#include <stdint.h>

// A request handed to Java: 24 bytes, native byte order (UblkNative.DESC_* offsets).
struct ubm_desc {
    int32_t tag;
    uint32_t op_flags;     // op in bits 0-7 (UBLK_IO_OP_*), flags above (UBLK_IO_F_FUA ...)
    uint32_t nr_sectors;   // 512-byte sectors
    uint32_t pad;
    uint64_t start_sector; // 512-byte sectors
};
_Static_assert(sizeof(struct ubm_desc) == 24, "ubm_desc is 24 bytes");

struct ubm_ctrl;
struct ubm_queue;

struct ubm_ctrl *ubm_ctrl_open(int *err);
void ubm_ctrl_close(struct ubm_ctrl *c);
int ubm_ctrl_ioctl_encode(struct ubm_ctrl *c);
int64_t ubm_ctrl_features(struct ubm_ctrl *c);
int ubm_add_dev(struct ubm_ctrl *c, int dev_id, int queues, int depth, int max_io_bytes, uint64_t flags);
int ubm_set_params(struct ubm_ctrl *c, int dev_id, uint64_t size_bytes, int lbs_shift, int pbs_shift,
                   int max_sectors, int attrs, int discard_granularity, int max_discard_sectors,
                   int max_write_zeroes_sectors);
int ubm_get_info(struct ubm_ctrl *c, int dev_id, int64_t *out);
int ubm_get_dev_sectors(struct ubm_ctrl *c, int dev_id, int64_t *sectors, int *lbs_shift);
int ubm_start_dev(struct ubm_ctrl *c, int dev_id, int pid);
int ubm_stop_dev(struct ubm_ctrl *c, int dev_id);
int ubm_del_dev(struct ubm_ctrl *c, int dev_id);
int ubm_start_recovery(struct ubm_ctrl *c, int dev_id);
int ubm_end_recovery(struct ubm_ctrl *c, int dev_id, int pid);
int ubm_cdev_open(int dev_id);
int ubm_close_fd(int fd);

// zc: the device was added with USER_COPY | AUTO_BUF_REG (zero copy; see ubm_queue_copy).
struct ubm_queue *ubm_queue_open(int cdev_fd, int ioctl_encode, int q_id, int depth, int zc, int *err);
int ubm_queue_set_buf(struct ubm_queue *q, int tag, uint64_t addr);
// Direct reads (served by the shim, not Java): returns UBM_READ_URING, UBM_READ_INLINE or, in zero
// copy mode, UBM_READ_MAPPED (an inline read written into the request from a mapping of fd)
// (inline only with allow_inline: 1 up to 64 KiB where the destination is a fixed buffer, 2 at
// every size; | UBM_READ_NO_MAP: a pread, never the mapping), 0 when fd is -1, or -errno.
#define UBM_READ_URING 1
#define UBM_READ_INLINE 2
#define UBM_READ_MAPPED 3
#define UBM_READ_NO_MAP 4
int ubm_queue_set_read_source(struct ubm_queue *q, int fd, int64_t base, int64_t limit, int allow_inline);
int64_t ubm_queue_copy(struct ubm_queue *q, int tag, void *buf, int64_t len, int to_request);
void ubm_queue_stats(struct ubm_queue *q, int64_t *out);
int ubm_queue_fetch_all(struct ubm_queue *q);
int ubm_queue_wake(struct ubm_queue *q);
int ubm_queue_next(struct ubm_queue *q, const int32_t *done, int ndone, struct ubm_desc *descs, int max,
                   int timeout_ms);
int ubm_queue_live(struct ubm_queue *q);
// Copying mode, before ubm_queue_fetch_all: the tag buffers (buf_len bytes each) become fixed
// buffers of the ring (READ_FIXED direct reads, WRITE_FIXED leg writes). Then leg writes straight
// from a request's buffer (io_uring WRITE_FIXED on the queue's ring, from the queue's thread
// while Java serves the WRITE; zero copy: the request's pages). See ublkmirror.c.
int ubm_queue_register_bufs(struct ubm_queue *q, int64_t buf_len);
int ubm_queue_write_start(struct ubm_queue *q, int tag, int fd, int64_t pos, int64_t len);
int64_t ubm_queue_write_wait(struct ubm_queue *q, int slot);
int64_t ubm_queue_write_fixed(struct ubm_queue *q, int tag, int fd, int64_t pos, int64_t len);
void ubm_queue_close(struct ubm_queue *q);
int ubm_desc_size(void);

// ---- resync loops (issue #4 part 1: native-assisted, measured in bench/NativeLoopsBench) ----
// ABI version of the calls below; Java refuses a library that answers another number.
#define UBM_LOOPS_ABI 1
int ubm_loops_abi(void);

// Copies len bytes from fd_in at off_in to fd_out at off_out. copy_file_range(2) first (an
// in-kernel page-cache copy on ext4; a reflink on xfs/btrfs), falling back to pread/pwrite
// through buf (buflen bytes, caller-owned) where the kernel refuses it (EXDEV, EINVAL,
// EOPNOTSUPP, ENOSYS). flags: UBM_COPY_NO_CFR forces the pread/pwrite path.
// Returns len, or a negative errno (-ENODATA: fd_in ended before len bytes).
#define UBM_COPY_NO_CFR 1
int64_t ubm_copy_range(int fd_in, int64_t off_in, int fd_out, int64_t off_out, int64_t len,
                       void *buf, int64_t buflen, int flags);

// posix_fadvise(fd, off, len, advice): 0 or a negative errno (benchmarks drop the page cache).
int ubm_fadvise(int fd, int64_t off, int64_t len, int advice);

// Scans a Roaring64NavigableMap's portable serialization (serializePortable: u64 bucket count,
// then per bucket u32 high key + a 32-bit portable RoaringBitmap; all little-endian) into sorted
// coalesced extents of at most max_blocks each, the same as Extents.coalesce: out[2i] = start,
// out[2i+1] = count. Returns the number of extents (stops writing past cap pairs but keeps
// counting, so a caller can size and retry), or -EINVAL for malformed input.
int64_t ubm_scan_portable64(const uint8_t *buf, int64_t len, int64_t max_blocks, int64_t *out, int64_t cap);

#endif
