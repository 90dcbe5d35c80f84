package org.ublkmirror.frontend.fuse;

import org.ublkmirror.frontend.BlockTarget;
import org.ublkmirror.sys.IoUring;
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
    /** io_uring threads, started after INIT when the kernel offered FUSE_OVER_IO_URING; empty otherwise. */
    private final List<UringThread> rings = new java.util.concurrent.CopyOnWriteArrayList<>();
    /** Entries registered with the kernel (the ring is in use once every queue has one). */
    final AtomicLong uringEntries = new AtomicLong();
    /** Requests served from ring entries. */
    final AtomicLong uringServed = new AtomicLong();
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
        return "FUSE 7." + negotiatedMinor + ", flags 0x" + Integer.toHexString(negotiatedFlags)
                + (rings.isEmpty() ? "" : ", io_uring " + rings.size() + " threads x " + opts.uringDepth() + " entries");
    }

    /** True when requests travel over io_uring (every ring entry registered). */
    boolean uringActive() {
        return !rings.isEmpty() && uringEntries.get() == (long) rings.size() * opts.uringDepth();
    }

    /**
     * Waits until every io_uring entry is registered (the kernel then sends requests through the
     * rings); true at once when io_uring is not in use; false on timeout or if a ring failed.
     */
    boolean awaitUring(long millis) throws InterruptedException {
        long end = System.currentTimeMillis() + millis;
        while (!rings.isEmpty() && !uringActive()) {
            for (UringThread r : rings) {
                if (r.failed != null) return false;
            }
            if (System.currentTimeMillis() > end) return false;
            Thread.sleep(2);
        }
        return true;
    }

    private List<Thread> allThreads() {
        List<Thread> l = new ArrayList<>();
        for (Worker w : workers) {
            l.add(w.thread);
        }
        for (UringThread r : rings) {
            l.add(r.thread);
        }
        return l;
    }

    private List<Handler> handlers() {
        List<Handler> l = new ArrayList<>(java.util.Arrays.asList(workers));
        for (UringThread r : rings) {
            l.addAll(java.util.Arrays.asList(r.entries));
        }
        return l;
    }

    /** Waits for every worker to end; true if all ended within the time. */
    boolean join(long millis) throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(millis);
        for (Thread t : allThreads()) {
            long left = TimeUnit.NANOSECONDS.toMillis(deadline - System.nanoTime());
            if (left <= 0) {
                return !anyAlive();
            }
            t.join(left);
        }
        return !anyAlive();
    }

    boolean anyAlive() {
        for (Thread t : allThreads()) {
            if (t.isAlive()) {
                return true;
            }
        }
        return false;
    }

    /** The longest time (nanoseconds) a request has been in the target now, or 0; with a description. */
    Stuck longestBusy() {
        long now = System.nanoTime();
        Stuck worst = null;
        for (Handler w : handlers()) {
            long since = w.busySince;
            if (since != 0) {
                long d = now - since;
                if (worst == null || d > worst.nanos) {
                    worst = new Stuck(d, w.name() + " in " + opName(w.busyOp) + " at offset " + w.busyOffset);
                }
            }
        }
        return worst;
    }

    record Stuck(long nanos, String what) {
    }

    List<Thread> threads() {
        return allThreads();
    }

    /**
     * PF_MEMALLOC_NOIO|PF_LOCAL_THROTTLE for the calling thread: its allocations must not wait for
     * writeback that goes through the loop device to us (memory-pressure deadlock).
     */
    private void ioFlusher() {
        if (c.prctl(LibC.PR_SET_IO_FLUSHER, 1, 0, 0, 0) != 0) {
            LOG.log(System.Logger.Level.DEBUG, "prctl(PR_SET_IO_FLUSHER) failed: errno " + LibC.errno());
        }
    }

    /** A thread reading requests from /dev/fuse and writing replies to it. */
    private final class Worker extends Handler implements Runnable {
        final Thread thread;

        Worker(int i) {
            // The kernel refuses a read buffer smaller than in header + fuse_write_in + max_write.
            req = ByteBuffer.allocateDirect(IN_HEADER_SIZE + WRITE_IN_SIZE + opts.maxWrite() + 4096)
                    .order(ByteOrder.nativeOrder());
            out = ByteBuffer.allocateDirect(OUT_HEADER_SIZE + opts.maxWrite()).order(ByteOrder.nativeOrder());
            thread = new Thread(this, "fuse-" + i);
            thread.setDaemon(true);
        }

        @Override
        String name() {
            return thread.getName();
        }

        @Override
        ByteBuffer writeData(int n, int len) {
            int dataAt = n - len; // IN_HEADER_SIZE + WRITE_IN_SIZE unless extensions follow
            return dataAt < IN_HEADER_SIZE + WRITE_IN_SIZE ? null : req.slice(dataAt, len);
        }

        @Override
        void send(int len) {
            long w = c.write(fd, out, len);
            if (w < 0) {
                int e = LibC.errno();
                // ENOENT: the kernel no longer waits for this request (interrupted or aborted).
                if (e != LibC.ENOENT && e != LibC.ENODEV) {
                    LOG.log(System.Logger.Level.ERROR, "write(/dev/fuse) of a reply failed: errno " + e);
                }
            }
        }

        @Override
        public void run() {
            ioFlusher();
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
                serve(req.getInt(IN_OPCODE), (int) n);
            }
        }
    }

    /**
     * Serves one request at a time from its views: {@code req} holds the in header at 0 and the
     * opcode's structure at 40 (as read from /dev/fuse), {@code out} receives the out header at 0
     * and the reply body at 16. Subclasses say where a WRITE's data is and how a reply is sent.
     */
    private abstract class Handler {
        ByteBuffer req;
        ByteBuffer out;
        volatile long busySince;
        volatile int busyOp;
        volatile long busyOffset;

        abstract String name();

        /** The data of a WRITE of {@code len} bytes in a request of {@code n} bytes; null if malformed. */
        abstract ByteBuffer writeData(int n, int len);

        /** Sends the reply: out header and body, {@code len} bytes from the start of out. */
        abstract void send(int len);

        final void serve(int op, int n) {
            busyOp = op;
            busyOffset = -1;
            busySince = System.nanoTime();
            try {
                dispatch(op, n);
            } finally {
                busySince = 0;
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
        final void reply(long unique, int errno, int bodyLen) {
            int len = OUT_HEADER_SIZE + (errno == 0 ? bodyLen : 0);
            out.putInt(OUT_LEN, len);
            out.putInt(OUT_ERROR, -errno);
            out.putLong(OUT_UNIQUE, unique);
            send(len);
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
            ByteBuffer data = len < 0 ? null : writeData(n, len);
            if (off < 0 || data == null) {
                reply(unique, EINVAL, 0);
                return;
            }
            if (off + len > size) {
                reply(unique, EFBIG, 0);
                return;
            }
            try {
                target.write(off, data, (flags & O_DSYNC) != 0);
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
            // FUSE over io_uring: offered only while the module parameter enable_uring is Y; the
            // connection keeps it after that. Requests then arrive in ring entries, replies go back
            // with the commit that fetches the next request: no read and write per request.
            int kflags2 = (kflags & INIT_EXT) != 0 ? req.getInt(INIT_IN_FLAGS2) : 0;
            boolean uring = opts.uringThreads() > 0 && (kflags2 & FLAGS2_OVER_IO_URING) != 0;
            if (uring) {
                flags |= INIT_EXT;
            }
            out.putInt(INIT_OUT_MAJOR, MAJOR);
            out.putInt(INIT_OUT_MINOR, Math.min(minor, MINOR));
            out.putInt(INIT_OUT_MAX_READAHEAD, maxReadahead);
            out.putInt(INIT_OUT_FLAGS, flags);
            out.putInt(INIT_OUT_FLAGS2, uring ? FLAGS2_OVER_IO_URING : 0);
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
            if (uring) {
                startUring(); // after the reply: the kernel takes ring registrations once INIT is done
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

    /** Queues the kernel keeps for FUSE over io_uring: one per possible CPU (num_possible_cpus). */
    static int possibleCpus() {
        try {
            String s = java.nio.file.Files.readString(java.nio.file.Path.of("/sys/devices/system/cpu/possible")).trim();
            int n = 0;
            for (String part : s.split(",")) {
                String[] r = part.split("-");
                n += r.length == 1 ? 1 : Integer.parseInt(r[1]) - Integer.parseInt(r[0]) + 1;
            }
            return n;
        } catch (java.io.IOException | RuntimeException e) {
            return Runtime.getRuntime().availableProcessors();
        }
    }

    private void startUring() {
        int queues = possibleCpus();
        for (int q = 0; q < queues; q++) {
            for (int t = 0; t < opts.uringThreads(); t++) {
                rings.add(new UringThread(q, t));
            }
        }
        for (UringThread r : rings) {
            r.thread.start();
        }
    }

    /**
     * One io_uring of one thread, with {@code uringDepth} entries registered on one kernel queue.
     * Each CQE hands over a request in an entry; the entry's reply is committed with
     * COMMIT_AND_FETCH, which also makes it wait for the next request: one io_uring_enter submits
     * the commits of every request served in the last round and waits for the next ones.
     */
    private final class UringThread implements Runnable {
        final Thread thread;
        final int qid;
        final UringEntry[] entries;
        volatile String failed;
        private IoUring ring;

        UringThread(int qid, int t) {
            this.qid = qid;
            this.entries = new UringEntry[opts.uringDepth()];
            this.thread = new Thread(this, "fuse-uring-q" + qid + "-" + t);
            thread.setDaemon(true);
            for (int i = 0; i < entries.length; i++) {
                entries[i] = new UringEntry(this, i);
            }
        }

        @Override
        public void run() {
            ioFlusher();
            int size = Integer.highestOneBit(Math.max(1, entries.length * 2 - 1));
            try {
                try {
                    ring = IoUring.create(size, IoUring.SETUP_SINGLE_ISSUER | IoUring.SETUP_DEFER_TASKRUN);
                } catch (java.io.IOException e) {
                    ring = IoUring.create(size, 0); // older kernels: no deferred task work
                }
            } catch (java.io.IOException | RuntimeException e) {
                failed = "io_uring setup failed: " + e.getMessage();
                LOG.log(System.Logger.Level.WARNING, failed + "; requests stay on /dev/fuse reads");
                return;
            }
            try {
                loop();
            } catch (Throwable t) {
                failed = String.valueOf(t);
                LOG.log(System.Logger.Level.ERROR, "FUSE io_uring thread " + thread.getName() + " died", t);
            } finally {
                ring.close();
            }
        }

        private void loop() throws InterruptedException {
            for (UringEntry e : entries) {
                e.register();
            }
            int r = submit(0);
            if (r < 0) {
                failed = "io_uring_enter failed registering: errno " + -r;
                return;
            }
            int live = entries.length;
            // a registration that fails completes at once; one that succeeds only with a request
            int bad = 0;
            for (int i = 0, n = ring.ready(); i < n; i++) {
                if (ring.cqeResult(i) < 0) bad++;
            }
            if (bad == 0) {
                uringEntries.addAndGet(entries.length);
            }
            while (live > 0) {
                int n = ring.ready();
                for (int i = 0; i < n; i++) {
                    UringEntry e = entries[(int) ring.cqeUserData(i)];
                    int res = ring.cqeResult(i);
                    if (res < 0) {
                        // ENOTCONN, ECANCELED: the connection is gone (unmounted, aborted); other: refused
                        live--;
                        if (res != -ENOTCONN && res != -ECANCELED && res != -LibC.ENODEV && res != -LibC.ECONNABORTED) {
                            failed = "ring entry ended: errno " + -res;
                            LOG.log(System.Logger.Level.WARNING, "FUSE io_uring " + thread.getName() + ": " + failed);
                        }
                        continue;
                    }
                    e.serveFetched();
                }
                ring.consume(n);
                if (live == 0) break;
                r = submit(1);
                if (r < 0 && r != -LibC.EINTR && r != -LibC.EAGAIN && r != -EBUSY) {
                    failed = "io_uring_enter failed: errno " + -r;
                    LOG.log(System.Logger.Level.ERROR, "FUSE io_uring " + thread.getName() + ": " + failed);
                    return;
                }
            }
        }

        private int submit(int wait) {
            return ring.submitAndWait(wait);
        }

        java.nio.ByteBuffer sqe(int cmdOp, int index) {
            ByteBuffer s = ring.nextSqe(); // never full: each entry has at most one SQE in the ring
            s.put(IoUring.SQE_OPCODE, (byte) IoUring.OP_URING_CMD);
            s.putInt(IoUring.SQE_FD, fd);
            s.putInt(IoUring.SQE_CMD_OP, cmdOp);
            s.putLong(IoUring.SQE_USER_DATA, index);
            s.putShort(IoUring.SQE_CMD + URING_CMD_QID, (short) qid);
            return s;
        }
    }

    /**
     * A ring entry: one direct buffer holding the header area (fuse_uring_req_header) at 0 and the
     * payload at 4096. The handler's views are laid over it so that the request code above works
     * unchanged: the kernel's in header is copied to 88, right before op_in at 128, so {@code req}
     * (from 88) has the header at 0 and the opcode's structure at 40; {@code out} starts 16 bytes
     * before the payload, so the reply body lands in the payload and the out header is copied to
     * in_out when the reply is committed.
     */
    private final class UringEntry extends Handler {
        private static final int PAYLOAD_AT = 4096, REQ_AT = URING_OP_IN - IN_HEADER_SIZE;
        final UringThread owner;
        final int index;
        final ByteBuffer buf;
        final ByteBuffer payload;
        final ByteBuffer iov;
        private boolean replied;

        UringEntry(UringThread owner, int index) {
            this.owner = owner;
            this.index = index;
            buf = ByteBuffer.allocateDirect(PAYLOAD_AT + opts.maxWrite()).order(ByteOrder.nativeOrder());
            payload = buf.slice(PAYLOAD_AT, opts.maxWrite()).order(ByteOrder.nativeOrder());
            req = buf.slice(REQ_AT, URING_HEADER_SIZE - REQ_AT).order(ByteOrder.nativeOrder());
            out = buf.slice(PAYLOAD_AT - OUT_HEADER_SIZE, OUT_HEADER_SIZE + opts.maxWrite()).order(ByteOrder.nativeOrder());
            iov = ByteBuffer.allocateDirect(32).order(ByteOrder.nativeOrder());
            iov.putLong(0, IoUring.address(buf));
            iov.putLong(8, URING_HEADER_SIZE);
            iov.putLong(16, IoUring.address(payload));
            iov.putLong(24, opts.maxWrite());
        }

        @Override
        String name() {
            return owner.thread.getName() + "/" + index;
        }

        void register() {
            ByteBuffer s = owner.sqe(URING_CMD_REGISTER, index);
            s.putLong(IoUring.SQE_ADDR, IoUring.address(iov));
            s.putInt(IoUring.SQE_LEN, 2);
        }

        /** A request arrived in this entry: serve it; the reply queues the commit. */
        void serveFetched() {
            for (int i = 0; i < IN_HEADER_SIZE; i += 8) {
                buf.putLong(REQ_AT + i, buf.getLong(URING_IN_OUT + i));
            }
            int op = buf.getInt(URING_IN_OUT + IN_OPCODE);
            int payloadLen = buf.getInt(URING_ENT_PAYLOAD_SZ);
            int n = buf.getInt(URING_IN_OUT + IN_LEN);
            if (op == LOOKUP && payloadLen > 0) {
                // the name travels in the payload (in_args[0] is empty): put it where lookup reads it
                int l = Math.min(payloadLen, URING_HEADER_SIZE - URING_OP_IN - 32);
                for (int i = 0; i < l; i++) {
                    buf.put(URING_OP_IN + i, payload.get(i));
                }
                n = IN_HEADER_SIZE + l;
            }
            replied = false;
            uringServed.incrementAndGet();
            serve(op, n);
            if (!replied) {
                // FORGET and INTERRUPT travel on /dev/fuse; anything else without a reply still
                // needs its entry back
                reply(buf.getLong(URING_IN_OUT + IN_UNIQUE), ENOSYS, 0);
            }
        }

        @Override
        ByteBuffer writeData(int n, int len) {
            return len <= buf.getInt(URING_ENT_PAYLOAD_SZ) ? payload.slice(0, len) : null;
        }

        @Override
        void send(int len) {
            buf.putLong(URING_IN_OUT, buf.getLong(PAYLOAD_AT - OUT_HEADER_SIZE));
            buf.putLong(URING_IN_OUT + 8, buf.getLong(PAYLOAD_AT - OUT_HEADER_SIZE + 8));
            buf.putInt(URING_ENT_PAYLOAD_SZ, len - OUT_HEADER_SIZE);
            ByteBuffer s = owner.sqe(URING_CMD_COMMIT_AND_FETCH, index);
            s.putLong(IoUring.SQE_CMD + URING_CMD_COMMIT_ID, buf.getLong(URING_ENT_COMMIT_ID));
            replied = true;
        }
    }

    private static final int ENOTCONN = 107, ECANCELED = 125, EBUSY = 16;
    private static final int EPROTO = 71;
}
