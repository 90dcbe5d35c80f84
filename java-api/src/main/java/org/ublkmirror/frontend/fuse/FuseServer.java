package org.ublkmirror.frontend.fuse;

import org.ublkmirror.frontend.BlockTarget;
import org.ublkmirror.sys.LibC;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

import static org.ublkmirror.frontend.fuse.FuseKernel.*;

/**
 * The data plane: worker threads that each read one request at a time from /dev/fuse, serve it
 * from the {@link BlockTarget} and write the reply. The file system is a root directory holding
 * one regular file (node id 2) of the target's size.
 *
 * <p>Buffers: each worker owns a direct request buffer (header + fuse_write_in + max_write) and a
 * direct reply buffer (out header + max_write). WRITE hands the target a slice of the request
 * buffer, READ has the target fill a slice of the reply buffer: no copies in Java.
 *
 * <p>A worker ends when reading /dev/fuse fails with ENODEV: the connection is gone (unmounted
 * and released by every user, or aborted through fusectl).
 */
final class FuseServer {
    private static final System.Logger LOG = System.getLogger(FuseServer.class.getName());

    static final long FILE_ID = 2;
    /** Attribute and entry cache timeout: nothing here changes behind the kernel's back. */
    private static final long VALID_SECONDS = 24 * 3600;

    private final LibC c = LibC.get();
    private final int fd;
    private final BlockTarget target;
    private final FuseFrontend.Options opts;
    private final long size;
    private final String fileName;
    private final byte[] fileNameBytes;
    private final long startSeconds = System.currentTimeMillis() / 1000;
    private final Worker[] workers;
    private final CountDownLatch initDone = new CountDownLatch(1);
    private volatile String initError;
    private volatile int negotiatedMinor;
    private volatile int negotiatedFlags;
    /** Requests answered (watchdog progress signal). */
    final AtomicLong completed = new AtomicLong();
    final AtomicLong flushes = new AtomicLong();
    /** Requests the target failed (answered EIO or EINVAL). */
    final AtomicLong errors = new AtomicLong();

    FuseServer(int fd, BlockTarget target, String fileName, FuseFrontend.Options opts) {
        this.fd = fd;
        this.target = target;
        this.opts = opts;
        this.size = target.sizeBytes();
        this.fileName = fileName;
        this.fileNameBytes = fileName.getBytes(StandardCharsets.UTF_8);
        this.workers = new Worker[opts.workers()];
        for (int i = 0; i < workers.length; i++) {
            workers[i] = new Worker(i);
        }
    }

    void start() {
        for (Worker w : workers) {
            w.thread.start();
        }
    }

    /** Waits for the kernel's INIT to be answered; false on timeout, throws if it was refused. */
    boolean awaitInit(long millis) throws InterruptedException {
        boolean ok = initDone.await(millis, TimeUnit.MILLISECONDS);
        if (ok && initError != null) {
            throw new IllegalStateException(initError);
        }
        return ok;
    }

    String negotiated() {
        return "FUSE 7." + negotiatedMinor + ", flags 0x" + Integer.toHexString(negotiatedFlags);
    }

    /** Waits for every worker to end; true if all ended within the time. */
    boolean join(long millis) throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(millis);
        for (Worker w : workers) {
            long left = TimeUnit.NANOSECONDS.toMillis(deadline - System.nanoTime());
            if (left <= 0) {
                return !anyAlive();
            }
            w.thread.join(left);
        }
        return !anyAlive();
    }

    boolean anyAlive() {
        for (Worker w : workers) {
            if (w.thread.isAlive()) {
                return true;
            }
        }
        return false;
    }

    /** The longest time (nanoseconds) a request has been in the target now, or 0; with a description. */
    Stuck longestBusy() {
        long now = System.nanoTime();
        Stuck worst = null;
        for (Worker w : workers) {
            long since = w.busySince;
            if (since != 0) {
                long d = now - since;
                if (worst == null || d > worst.nanos) {
                    worst = new Stuck(d, w.thread.getName() + " in " + opName(w.busyOp) + " at offset " + w.busyOffset);
                }
            }
        }
        return worst;
    }

    record Stuck(long nanos, String what) {
    }

    List<Thread> threads() {
        List<Thread> l = new ArrayList<>();
        for (Worker w : workers) {
            l.add(w.thread);
        }
        return l;
    }

    private final class Worker implements Runnable {
        final Thread thread;
        final ByteBuffer req;
        final ByteBuffer out;
        volatile long busySince;
        volatile int busyOp;
        volatile long busyOffset;

        Worker(int i) {
            // The kernel refuses a read buffer smaller than in header + fuse_write_in + max_write.
            req = ByteBuffer.allocateDirect(IN_HEADER_SIZE + WRITE_IN_SIZE + opts.maxWrite() + 4096)
                    .order(ByteOrder.nativeOrder());
            out = ByteBuffer.allocateDirect(OUT_HEADER_SIZE + opts.maxWrite()).order(ByteOrder.nativeOrder());
            thread = new Thread(this, "fuse-" + i);
            thread.setDaemon(true);
        }

        @Override
        public void run() {
            // PF_MEMALLOC_NOIO|PF_LOCAL_THROTTLE for this thread: its allocations must not wait for
            // writeback that goes through the loop device to us (memory-pressure deadlock).
            if (c.prctl(LibC.PR_SET_IO_FLUSHER, 1, 0, 0, 0) != 0) {
                LOG.log(System.Logger.Level.DEBUG, "prctl(PR_SET_IO_FLUSHER) failed: errno " + LibC.errno());
            }
            try {
                loop();
            } catch (Throwable t) {
                LOG.log(System.Logger.Level.ERROR, "FUSE worker " + thread.getName() + " died", t);
            }
        }

        private void loop() {
            while (true) {
                long n = c.read(fd, req, req.capacity());
                if (n < 0) {
                    int e = LibC.errno();
                    // ENOENT: the request was interrupted before we read it; EINTR, EAGAIN: retry.
                    if (e == LibC.ENOENT || e == LibC.EINTR || e == LibC.EAGAIN) {
                        continue;
                    }
                    if (e != LibC.ENODEV && e != LibC.ECONNABORTED) {
                        LOG.log(System.Logger.Level.ERROR, "read(/dev/fuse) failed: errno " + e);
                    }
                    initDone.countDown();
                    return; // the connection is gone
                }
                if (n < IN_HEADER_SIZE) {
                    LOG.log(System.Logger.Level.ERROR, "short FUSE request: " + n + " bytes");
                    continue;
                }
                int op = req.getInt(IN_OPCODE);
                busyOp = op;
                busyOffset = -1;
                busySince = System.nanoTime();
                try {
                    dispatch(op, (int) n);
                } finally {
                    busySince = 0;
                }
            }
        }

        private void dispatch(int op, int n) {
            long unique = req.getLong(IN_UNIQUE);
            long node = req.getLong(IN_NODEID);
            switch (op) {
                case READ: read(unique); break;
                case WRITE: write(unique, n); break;
                case FORGET: case BATCH_FORGET: case INTERRUPT:
                    // No reply. INTERRUPT: every request here finishes on its own.
                    break;
                case INIT: init(unique); break;
                case LOOKUP: lookup(unique, node, n); break;
                case GETATTR: getattr(unique, node); break;
                case SETATTR: setattr(unique, node); break;
                case OPEN: open(unique, node); break;
                case OPENDIR: opendir(unique, node); break;
                case READDIR: readdir(unique, node); break;
                case FSYNC: fsync(unique); break;
                case FALLOCATE: fallocate(unique, node); break;
                case STATFS: statfs(unique); break;
                case FLUSH: case RELEASE: case RELEASEDIR: case FSYNCDIR: case ACCESS: case DESTROY:
                    reply(unique, 0, 0);
                    break;
                default:
                    reply(unique, ENOSYS, 0);
            }
        }

        /** Sends the reply whose body (if any) sits in out after the header. */
        private void reply(long unique, int errno, int bodyLen) {
            int len = OUT_HEADER_SIZE + (errno == 0 ? bodyLen : 0);
            out.putInt(OUT_LEN, len);
            out.putInt(OUT_ERROR, -errno);
            out.putLong(OUT_UNIQUE, unique);
            long w = c.write(fd, out, len);
            if (w < 0) {
                int e = LibC.errno();
                // ENOENT: the kernel no longer waits for this request (interrupted or aborted).
                if (e != LibC.ENOENT && e != LibC.ENODEV) {
                    LOG.log(System.Logger.Level.ERROR, "write(/dev/fuse) of a reply failed: errno " + e);
                }
            }
            completed.incrementAndGet();
        }

        private int errnoOf(Throwable t, String what) {
            errors.incrementAndGet();
            LOG.log(System.Logger.Level.WARNING, what + " failed: " + t);
            return t instanceof IllegalArgumentException ? EINVAL : EIO;
        }

        private void read(long unique) {
            long off = req.getLong(RW_IN_OFFSET);
            int len = req.getInt(RW_IN_SIZE);
            busyOffset = off;
            if (off < 0 || len < 0 || len > opts.maxWrite()) {
                reply(unique, EINVAL, 0);
                return;
            }
            // Short read at the end of the file, as for any file.
            int n = (int) Math.max(0, Math.min(len, size - off));
            if (n > 0) {
                try {
                    target.read(off, out.slice(OUT_HEADER_SIZE, n));
                } catch (Exception | AssertionError e) {
                    reply(unique, errnoOf(e, "read of " + n + " bytes at " + off), 0);
                    return;
                }
            }
            reply(unique, 0, n);
        }

        private void write(long unique, int n) {
            long off = req.getLong(RW_IN_OFFSET);
            int len = req.getInt(RW_IN_SIZE);
            int flags = req.getInt(RW_IN_FLAGS);
            busyOffset = off;
            int dataAt = n - len; // IN_HEADER_SIZE + WRITE_IN_SIZE unless extensions follow
            if (off < 0 || len < 0 || dataAt < IN_HEADER_SIZE + WRITE_IN_SIZE) {
                reply(unique, EINVAL, 0);
                return;
            }
            if (off + len > size) {
                reply(unique, EFBIG, 0);
                return;
            }
            try {
                target.write(off, req.slice(dataAt, len), (flags & O_DSYNC) != 0);
            } catch (Exception | AssertionError e) {
                reply(unique, errnoOf(e, "write of " + len + " bytes at " + off), 0);
                return;
            }
            out.putInt(WRITE_OUT_SIZE_FIELD, len);
            out.putInt(WRITE_OUT_SIZE_FIELD + 4, 0);
            reply(unique, 0, WRITE_OUT_SIZE);
        }

        private void fsync(long unique) {
            busyOffset = -1;
            try {
                target.flush();
                flushes.incrementAndGet();
            } catch (Exception | AssertionError e) {
                reply(unique, errnoOf(e, "flush"), 0);
                return;
            }
            reply(unique, 0, 0);
        }

        private void fallocate(long unique, long node) {
            long off = req.getLong(FALLOC_IN_OFFSET);
            long len = req.getLong(FALLOC_IN_LENGTH);
            int mode = req.getInt(FALLOC_IN_MODE);
            busyOffset = off;
            if (node != FILE_ID) {
                reply(unique, EOPNOTSUPP, 0);
                return;
            }
            if (off < 0 || len <= 0) {
                reply(unique, EINVAL, 0);
                return;
            }
            int kind = mode & ~FALLOC_KEEP_SIZE;
            long end = off + len;
            try {
                if (kind == 0) {
                    // Plain allocation: everything is allocated already; growing is refused.
                    reply(unique, end > size && (mode & FALLOC_KEEP_SIZE) == 0 ? EFBIG : 0, 0);
                    return;
                }
                if ((mode & FALLOC_KEEP_SIZE) == 0 && end > size) {
                    reply(unique, EFBIG, 0);
                    return;
                }
                long l = Math.min(end, size) - off;
                if (l > 0) {
                    if (kind == FALLOC_PUNCH_HOLE) {
                        target.discard(off, l);
                    } else if (kind == FALLOC_ZERO_RANGE || kind == FALLOC_WRITE_ZEROES) {
                        target.writeZeroes(off, l);
                    } else {
                        reply(unique, EOPNOTSUPP, 0);
                        return;
                    }
                }
            } catch (Exception | AssertionError e) {
                reply(unique, errnoOf(e, "fallocate mode " + mode + " of " + len + " bytes at " + off), 0);
                return;
            }
            reply(unique, 0, 0);
        }

        private void init(long unique) {
            int major = req.getInt(INIT_IN_MAJOR);
            int minor = req.getInt(INIT_IN_MINOR);
            int maxReadahead = req.getInt(INIT_IN_MAX_READAHEAD);
            int kflags = req.getInt(INIT_IN_FLAGS);
            out.clear();
            for (int i = OUT_HEADER_SIZE; i < OUT_HEADER_SIZE + INIT_OUT_SIZE; i += 4) {
                out.putInt(i, 0);
            }
            if (major < MAJOR) {
                initError = "kernel speaks FUSE " + major + "." + minor + "; need 7." + MIN_MINOR;
                reply(unique, EPROTO, 0);
                initDone.countDown();
                return;
            }
            if (major > MAJOR) {
                // The kernel will send INIT again with our major.
                out.putInt(INIT_OUT_MAJOR, MAJOR);
                reply(unique, 0, INIT_OUT_SIZE);
                return;
            }
            if (minor < MIN_MINOR) {
                initError = "kernel speaks FUSE 7." + minor + "; need 7." + MIN_MINOR + " (max_pages)";
                reply(unique, EPROTO, 0);
                initDone.countDown();
                return;
            }
            // ASYNC_DIO: the loop device's direct I/O reaches us as many requests in flight (without
            //   it loop has one request outstanding: random I/O fell to a third, notes/fuse-loop.md).
            // MAX_PAGES + max_write 1 MiB: big requests stay whole. BIG_WRITES: legacy spelling.
            // ASYNC_READ: page-cache reads (anyone reading the file through the mount) in parallel.
            // Not WRITEBACK_CACHE: every write must reach the target before it is acknowledged.
            int want = ASYNC_READ | BIG_WRITES | ASYNC_DIO | MAX_PAGES | PARALLEL_DIROPS;
            int flags = kflags & want;
            out.putInt(INIT_OUT_MAJOR, MAJOR);
            out.putInt(INIT_OUT_MINOR, Math.min(minor, MINOR));
            out.putInt(INIT_OUT_MAX_READAHEAD, maxReadahead);
            out.putInt(INIT_OUT_FLAGS, flags);
            // Async direct I/O travels as background requests: the default limit (12) would cap
            // the loop device's queue depth.
            out.putShort(INIT_OUT_MAX_BACKGROUND, (short) opts.maxBackground());
            out.putShort(INIT_OUT_CONGESTION, (short) (opts.maxBackground() * 3 / 4));
            out.putInt(INIT_OUT_MAX_WRITE, opts.maxWrite());
            out.putInt(INIT_OUT_TIME_GRAN, 1);
            out.putShort(INIT_OUT_MAX_PAGES, (short) (opts.maxWrite() / 4096));
            negotiatedMinor = Math.min(minor, MINOR);
            negotiatedFlags = flags;
            reply(unique, 0, INIT_OUT_SIZE);
            if ((flags & ASYNC_DIO) == 0) {
                LOG.log(System.Logger.Level.WARNING, "kernel does not offer FUSE_ASYNC_DIO: random I/O will be slow");
            }
            initDone.countDown();
        }

        private void putAttr(int at, long node) {
            boolean dir = node == ROOT_ID;
            out.putLong(at + ATTR_INO, node);
            out.putLong(at + ATTR_SIZE, dir ? 0 : size);
            out.putLong(at + ATTR_BLOCKS, dir ? 0 : (size + 511) / 512);
            out.putLong(at + ATTR_ATIME, startSeconds);
            out.putLong(at + ATTR_MTIME, startSeconds);
            out.putLong(at + ATTR_CTIME, startSeconds);
            out.putInt(at + ATTR_ATIMENSEC, 0);
            out.putInt(at + ATTR_MTIMENSEC, 0);
            out.putInt(at + ATTR_CTIMENSEC, 0);
            out.putInt(at + ATTR_MODE, dir ? S_IFDIR | 0755 : S_IFREG | 0600);
            out.putInt(at + ATTR_NLINK, dir ? 2 : 1);
            out.putInt(at + ATTR_UID, 0);
            out.putInt(at + ATTR_GID, 0);
            out.putInt(at + ATTR_RDEV, 0);
            out.putInt(at + ATTR_BLKSIZE, target.blockSize());
            out.putInt(at + ATTR_FLAGS, 0);
        }

        private void lookup(long unique, long parent, int n) {
            if (parent != ROOT_ID) {
                reply(unique, ENOTDIR, 0);
                return;
            }
            int nameLen = n - NAME_IN - 1; // NUL-terminated
            boolean match = nameLen == fileNameBytes.length;
            for (int i = 0; match && i < nameLen; i++) {
                match = req.get(NAME_IN + i) == fileNameBytes[i];
            }
            if (!match) {
                reply(unique, ENOENT, 0);
                return;
            }
            out.putLong(ENTRY_NODEID, FILE_ID);
            out.putLong(ENTRY_GENERATION, 1);
            out.putLong(ENTRY_VALID, VALID_SECONDS);
            out.putLong(ENTRY_ATTR_VALID, VALID_SECONDS);
            out.putInt(ENTRY_VALID_NSEC, 0);
            out.putInt(ENTRY_ATTR_VALID_NSEC, 0);
            putAttr(ENTRY_ATTR, FILE_ID);
            reply(unique, 0, ENTRY_OUT_SIZE);
        }

        private void getattr(long unique, long node) {
            if (node != ROOT_ID && node != FILE_ID) {
                reply(unique, ENOENT, 0);
                return;
            }
            out.putLong(ATTR_OUT_VALID, VALID_SECONDS);
            out.putInt(ATTR_OUT_VALID_NSEC, 0);
            out.putInt(ATTR_OUT_VALID_NSEC + 4, 0);
            putAttr(ATTR_OUT_ATTR, node);
            reply(unique, 0, ATTR_OUT_SIZE);
        }

        private void setattr(long unique, long node) {
            int valid = req.getInt(SETATTR_IN_VALID);
            if (node == FILE_ID && (valid & FATTR_SIZE) != 0 && req.getLong(SETATTR_IN_SIZE) != size) {
                reply(unique, EPERM, 0); // the volume's size is fixed
                return;
            }
            // Mode, owner and times are accepted and forgotten: they mean nothing for a volume.
            getattr(unique, node);
        }

        private void open(long unique, long node) {
            if (node == ROOT_ID) {
                reply(unique, EISDIR, 0);
                return;
            }
            if (node != FILE_ID) {
                reply(unique, ENOENT, 0);
                return;
            }
            out.putLong(OPEN_OUT_FH, 0);
            int f = 0;
            if (opts.directIoOpen()) {
                // Bypass the page cache for every opener, with writes in parallel.
                f = FOPEN_DIRECT_IO | FOPEN_PARALLEL_DIRECT_WRITES;
            }
            out.putInt(OPEN_OUT_FLAGS, f); // no KEEP_CACHE: page cache dropped on open
            out.putInt(OPEN_OUT_FLAGS + 4, 0);
            reply(unique, 0, OPEN_OUT_SIZE);
        }

        private void opendir(long unique, long node) {
            if (node != ROOT_ID) {
                reply(unique, ENOTDIR, 0);
                return;
            }
            out.putLong(OPEN_OUT_FH, 0);
            out.putInt(OPEN_OUT_FLAGS, 0);
            out.putInt(OPEN_OUT_FLAGS + 4, 0);
            reply(unique, 0, OPEN_OUT_SIZE);
        }

        private void readdir(long unique, long node) {
            if (node != ROOT_ID) {
                reply(unique, ENOTDIR, 0);
                return;
            }
            long from = req.getLong(RW_IN_OFFSET);
            int max = Math.min(req.getInt(RW_IN_SIZE), out.capacity() - OUT_HEADER_SIZE);
            int at = OUT_HEADER_SIZE;
            for (long i = from; i < 3; i++) {
                byte[] name = i == 0 ? new byte[] {'.'} : i == 1 ? new byte[] {'.', '.'} : fileNameBytes;
                int rec = (DIRENT_NAME + name.length + 7) & ~7;
                if (at - OUT_HEADER_SIZE + rec > max) {
                    break;
                }
                out.putLong(at, i == 2 ? FILE_ID : ROOT_ID);
                out.putLong(at + 8, i + 1); // offset of the next entry
                out.putInt(at + 16, name.length);
                out.putInt(at + 20, i == 2 ? DT_REG : DT_DIR);
                for (int k = 0; k < rec - DIRENT_NAME; k++) {
                    out.put(at + DIRENT_NAME + k, k < name.length ? name[k] : 0);
                }
                at += rec;
            }
            reply(unique, 0, at - OUT_HEADER_SIZE);
        }

        private void statfs(long unique) {
            int bs = target.blockSize();
            out.putLong(STATFS_BLOCKS, size / bs);
            out.putLong(STATFS_BFREE, 0);
            out.putLong(STATFS_BAVAIL, 0);
            out.putLong(STATFS_FILES, 2);
            out.putLong(STATFS_FFREE, 0);
            out.putInt(STATFS_BSIZE, bs);
            out.putInt(STATFS_NAMELEN, 255);
            out.putInt(STATFS_FRSIZE, bs);
            for (int i = STATFS_FRSIZE + 4; i < OUT_HEADER_SIZE + STATFS_OUT_SIZE; i += 4) {
                out.putInt(i, 0);
            }
            reply(unique, 0, STATFS_OUT_SIZE);
        }
    }

    private static final int EPROTO = 71;
}
