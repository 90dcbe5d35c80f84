package org.ublkmirror.frontend.fuse;

/**
 * The FUSE kernel protocol (include/uapi/linux/fuse.h), as far as this frontend speaks it:
 * opcodes, flags and the byte offsets of the structures it reads and writes. All integers are
 * little-endian (native order on the machines this runs on); every structure is padded to 8 bytes.
 *
 * <p>We answer INIT with minor version {@link #MINOR} (7.38, Linux 6.2's header) even when the
 * kernel speaks a newer one: the kernel then uses the 7.38 layouts below, which we have pinned.
 */
final class FuseKernel {
    private FuseKernel() {
    }

    static final int MAJOR = 7;
    static final int MINOR = 38;
    /** Oldest minor with every structure size used here (fuse_write_in 40 bytes: 7.9; max_pages: 7.28). */
    static final int MIN_MINOR = 28;

    static final long ROOT_ID = 1;

    // ---- opcodes (enum fuse_opcode)
    static final int LOOKUP = 1, FORGET = 2, GETATTR = 3, SETATTR = 4, READLINK = 5, SYMLINK = 6, MKNOD = 8,
            MKDIR = 9, UNLINK = 10, RMDIR = 11, RENAME = 12, LINK = 13, OPEN = 14, READ = 15, WRITE = 16,
            STATFS = 17, RELEASE = 18, FSYNC = 20, SETXATTR = 21, GETXATTR = 22, LISTXATTR = 23,
            REMOVEXATTR = 24, FLUSH = 25, INIT = 26, OPENDIR = 27, READDIR = 28, RELEASEDIR = 29,
            FSYNCDIR = 30, GETLK = 31, SETLK = 32, SETLKW = 33, ACCESS = 34, CREATE = 35, INTERRUPT = 36,
            BMAP = 37, DESTROY = 38, IOCTL = 39, POLL = 40, NOTIFY_REPLY = 41, BATCH_FORGET = 42,
            FALLOCATE = 43, READDIRPLUS = 44, RENAME2 = 45, LSEEK = 46, COPY_FILE_RANGE = 47;

    // ---- fuse_init_in.flags / fuse_init_out.flags
    static final int ASYNC_READ = 1 << 0, BIG_WRITES = 1 << 5, ASYNC_DIO = 1 << 15, WRITEBACK_CACHE = 1 << 16,
            PARALLEL_DIROPS = 1 << 18, MAX_PAGES = 1 << 22, INIT_EXT = 1 << 30;

    /** fuse_init_in.flags2 / fuse_init_out.flags2 (bits 32..63 of the flags, read only with INIT_EXT). */
    static final int FLAGS2_OVER_IO_URING = 1 << (41 - 32);

    // ---- FUSE over io_uring (7.42; Linux 6.14): IORING_OP_URING_CMD on /dev/fuse with 128-byte SQEs
    static final int URING_CMD_REGISTER = 1, URING_CMD_COMMIT_AND_FETCH = 2;
    /**
     * struct fuse_uring_req_header, the first buffer of a ring entry: in_out (fuse_in_header on
     * fetch, fuse_out_header on commit), op_in (the opcode's structure, in_args[0]), then
     * fuse_uring_ent_in_out: flags, commit_id, payload_sz. The payload (WRITE data, every reply
     * body) is the entry's second buffer.
     */
    static final int URING_IN_OUT = 0, URING_OP_IN = 128, URING_ENT_COMMIT_ID = 264, URING_ENT_PAYLOAD_SZ = 272,
            URING_HEADER_SIZE = 288;
    /** struct fuse_uring_cmd_req in the SQE's command area: flags, commit_id, qid. */
    static final int URING_CMD_COMMIT_ID = 8, URING_CMD_QID = 16;

    // ---- fuse_open_out.open_flags
    static final int FOPEN_DIRECT_IO = 1 << 0, FOPEN_KEEP_CACHE = 1 << 1, FOPEN_PARALLEL_DIRECT_WRITES = 1 << 6;

    // ---- fuse_setattr_in.valid
    static final int FATTR_SIZE = 1 << 3;

    // ---- fallocate(2) modes
    static final int FALLOC_KEEP_SIZE = 0x01, FALLOC_PUNCH_HOLE = 0x02, FALLOC_ZERO_RANGE = 0x10,
            /** Linux 6.17: write zeroes, allocating (the loop driver uses it for REQ_OP_WRITE_ZEROES w/o unmap). */
            FALLOC_WRITE_ZEROES = 0x80;

    /** open(2) flags seen in fuse_write_in.flags. */
    static final int O_DSYNC = 0x1000;

    // ---- errno
    static final int EPERM = 1, ENOENT = 2, EIO = 5, EFBIG = 27, EISDIR = 21, ENOTDIR = 20, EINVAL = 22,
            ENOSYS = 38, EOPNOTSUPP = 95;

    // ---- struct fuse_in_header (40 bytes)
    static final int IN_LEN = 0, IN_OPCODE = 4, IN_UNIQUE = 8, IN_NODEID = 16, IN_UID = 24, IN_GID = 28,
            IN_PID = 32, IN_TOTAL_EXTLEN = 36, IN_HEADER_SIZE = 40;
    /** struct fuse_out_header (16 bytes): len, error (negative errno), unique. */
    static final int OUT_LEN = 0, OUT_ERROR = 4, OUT_UNIQUE = 8, OUT_HEADER_SIZE = 16;

    // Request bodies, as offsets from the start of the request (after the in header).
    /** fuse_init_in: major, minor, max_readahead, flags, flags2. */
    static final int INIT_IN_MAJOR = 40, INIT_IN_MINOR = 44, INIT_IN_MAX_READAHEAD = 48, INIT_IN_FLAGS = 52,
            INIT_IN_FLAGS2 = 56;
    /** fuse_read_in and fuse_write_in share these: fh, offset, size, *_flags, lock_owner, flags. */
    static final int RW_IN_FH = 40, RW_IN_OFFSET = 48, RW_IN_SIZE = 56, RW_IN_RWFLAGS = 60, RW_IN_FLAGS = 72;
    /** sizeof(fuse_write_in) since 7.9: the data of a WRITE follows at 40 + 40. */
    static final int WRITE_IN_SIZE = 40;
    /** fuse_setattr_in: valid, padding, fh, size, ... */
    static final int SETATTR_IN_VALID = 40, SETATTR_IN_SIZE = 56;
    /** fuse_fallocate_in: fh, offset, length, mode. */
    static final int FALLOC_IN_OFFSET = 48, FALLOC_IN_LENGTH = 56, FALLOC_IN_MODE = 64;
    /** fuse_open_in: flags, open_flags. */
    static final int OPEN_IN_FLAGS = 40;
    /** fuse_batch_forget_in: count, dummy, then fuse_forget_one[count]. */
    static final int NAME_IN = 40;

    // Reply bodies, as offsets from the start of the reply (after the out header).
    /** struct fuse_attr (88 bytes). */
    static final int ATTR_INO = 0, ATTR_SIZE = 8, ATTR_BLOCKS = 16, ATTR_ATIME = 24, ATTR_MTIME = 32, ATTR_CTIME = 40,
            ATTR_ATIMENSEC = 48, ATTR_MTIMENSEC = 52, ATTR_CTIMENSEC = 56, ATTR_MODE = 60, ATTR_NLINK = 64,
            ATTR_UID = 68, ATTR_GID = 72, ATTR_RDEV = 76, ATTR_BLKSIZE = 80, ATTR_FLAGS = 84, ATTR_STRUCT_SIZE = 88;
    /** struct fuse_entry_out (128 bytes): nodeid, generation, entry_valid, attr_valid, *_nsec, attr. */
    static final int ENTRY_NODEID = 16, ENTRY_GENERATION = 24, ENTRY_VALID = 32, ENTRY_ATTR_VALID = 40,
            ENTRY_VALID_NSEC = 48, ENTRY_ATTR_VALID_NSEC = 52, ENTRY_ATTR = 56, ENTRY_OUT_SIZE = 128;
    /** struct fuse_attr_out (104 bytes): attr_valid, attr_valid_nsec, dummy, attr. */
    static final int ATTR_OUT_VALID = 16, ATTR_OUT_VALID_NSEC = 24, ATTR_OUT_ATTR = 32, ATTR_OUT_SIZE = 104;
    /** struct fuse_open_out (16 bytes): fh, open_flags, padding. */
    static final int OPEN_OUT_FH = 16, OPEN_OUT_FLAGS = 24, OPEN_OUT_SIZE = 16;
    /** struct fuse_write_out (8 bytes): size, padding. */
    static final int WRITE_OUT_SIZE_FIELD = 16, WRITE_OUT_SIZE = 8;
    /** struct fuse_init_out (64 bytes). */
    static final int INIT_OUT_MAJOR = 16, INIT_OUT_MINOR = 20, INIT_OUT_MAX_READAHEAD = 24, INIT_OUT_FLAGS = 28,
            INIT_OUT_MAX_BACKGROUND = 32, INIT_OUT_CONGESTION = 34, INIT_OUT_MAX_WRITE = 36, INIT_OUT_TIME_GRAN = 40,
            INIT_OUT_MAX_PAGES = 44, INIT_OUT_MAP_ALIGNMENT = 46, INIT_OUT_FLAGS2 = 48, INIT_OUT_SIZE = 64;
    /** struct fuse_kstatfs (80 bytes). */
    static final int STATFS_BLOCKS = 16, STATFS_BFREE = 24, STATFS_BAVAIL = 32, STATFS_FILES = 40, STATFS_FFREE = 48,
            STATFS_BSIZE = 56, STATFS_NAMELEN = 60, STATFS_FRSIZE = 64, STATFS_OUT_SIZE = 80;
    /** struct fuse_dirent: ino, off, namelen, type, name, padded to 8. */
    static final int DIRENT_NAME = 24;
    static final int DT_DIR = 4, DT_REG = 8;

    static final int S_IFDIR = 0040000, S_IFREG = 0100000;

    static String opName(int op) {
        switch (op) {
            case LOOKUP: return "LOOKUP";
            case GETATTR: return "GETATTR";
            case SETATTR: return "SETATTR";
            case OPEN: return "OPEN";
            case READ: return "READ";
            case WRITE: return "WRITE";
            case STATFS: return "STATFS";
            case RELEASE: return "RELEASE";
            case FSYNC: return "FSYNC";
            case FLUSH: return "FLUSH";
            case INIT: return "INIT";
            case OPENDIR: return "OPENDIR";
            case READDIR: return "READDIR";
            case RELEASEDIR: return "RELEASEDIR";
            case FALLOCATE: return "FALLOCATE";
            case DESTROY: return "DESTROY";
            default: return "op" + op;
        }
    }
}
