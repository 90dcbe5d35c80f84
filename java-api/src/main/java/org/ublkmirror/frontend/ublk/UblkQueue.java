package org.ublkmirror.frontend.ublk;

import jnr.ffi.Memory;
import jnr.ffi.Pointer;
import jnr.ffi.Runtime;
import org.ublkmirror.frontend.BlockTarget;
import org.ublkmirror.leg.WriteSource;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.Executor;
import java.util.concurrent.atomic.AtomicLong;

/**
 * One ublk hardware queue: its own io_uring in the shim and one platform thread, the only one
 * that submits to it (the kernel requires the task that fetched a tag to commit it). The thread
 * loops on {@code ubm_queue_next}: one native call commits every finished request and returns
 * the next batch. It serves a WRITE the target says would not wait itself (a page-cache write);
 * every other request goes to the device's workers, so a queue keeps up to its depth in flight
 * in the engine; a worker that finishes hands the result back through {@link #complete} and
 * wakes the thread (an eventfd read posted in the ring) only when the thread has gone to wait
 * since the last hand-back.
 *
 * <p>I/O buffers are direct ByteBuffers, one per tag of {@code maxIoBytes}, page aligned; the
 * kernel copies request data into and out of them (in the copying mode they are also the ring's
 * fixed buffers). Reads the shim serves from the target's {@link BlockTarget#directRead} file
 * never come here (in either mode). In zero-copy mode ({@code zc}: the device has USER_COPY and
 * AUTO_BUF_REG) the kernel copies nothing: a worker fetches a write's data into the tag's buffer
 * ({@code ubm_queue_copy}), and copies a read's result out the same way. A write served on this
 * thread of at least {@link #fixedWritesMin} bytes reaches file legs straight from fixed buffer
 * {@code tag} ({@link TagSource}: io_uring WRITE_FIXED, both legs in flight at once).
 */
final class UblkQueue implements Runnable {
    static final int OP_READ = 0, OP_WRITE = 1, OP_FLUSH = 2, OP_DISCARD = 3, OP_WRITE_SAME = 4, OP_WRITE_ZEROES = 5;
    static final int F_FUA = 1 << 13;
    /** Zero copy: the kernel could not register this request's pages (AUTO_BUF_REG's FALLBACK). */
    static final int F_NEED_REG_BUF = 1 << 17;
    private static final int EIO = 5, EOPNOTSUPP = 95, ENODEV = 19, EINVAL = 22, ENOBUFS = 105, EBUSY = 16;

    private final UblkNative n;
    private final Pointer q;
    private final int qid, depth;
    private final BlockTarget target;
    private final Executor workers;
    private final ByteBuffer[] bufs;
    private final long[] bufAddrs;
    private final boolean zc;
    /** Direct reads are a pread on the queue thread (a memory file system; see the shim's set_read_source). */
    final boolean readsInline;
    /**
     * The shim's fixed buffer {@code tag} holds the request's data: zero copy (the request's pages)
     * or the tag's buffer registered with the ring (copying mode); then direct reads of a memory
     * file system are a pread only up to 64 KiB, READ_FIXED above.
     */
    final boolean bufsFixed;
    /** Direct reads of a memory file system are a pread at every size ({@code UBLK_MIRROR_DIRECT_READS=inline}). */
    final boolean readsInlineAll;
    /**
     * Zero copy: an inline read is one write into the request from a read-only mapping of the
     * source file (one copy), not a pread into the tag's buffer and a write from it (two).
     */
    final boolean readsMapped;
    private static final int READ_INLINE = 2, READ_MAPPED = 3;
    /** allowInline flag: an inline read is always a pread, never through a mapping ({@code UBLK_MIRROR_DIRECT_READS=pread}). */
    static final int READ_NO_MAP = 4;
    private final Pointer donePtr, descPtr;
    private final Thread thread;
    final CountDownLatch fetched = new CountDownLatch(1);
    private volatile int fetchResult = 1;
    private volatile boolean stop;

    // finished requests waiting to be committed, guarded by `this`
    private final int[] doneTags, doneRes;
    private int ndone;
    private boolean armed; // the queue thread may be waiting: the next hand-back must wake it

    final AtomicLong batches = new AtomicLong(), requests = new AtomicLong(), wakes = new AtomicLong();
    /** Writes served on this thread ({@link BlockTarget#writeWouldNotWait}), not handed to a worker. */
    final AtomicLong writesInline = new AtomicLong();
    /** Serve writes the target says would not wait on this thread (docs/frontend-ublk.md "Writes on the queue thread"). */
    private final boolean inlineWrites;
    /** The writes of a batch are started together ({@code UBLK_MIRROR_BATCH_WRITES}, on by default). */
    private final boolean batchWrites;
    /**
     * Writes served on this thread go to the legs straight from the request's buffer (io_uring
     * WRITE_FIXED in the shim; docs/frontend-ublk.md "Leg writes from the request's buffer"):
     * null when on, else why not.
     */
    final String fixedWritesOff;
    /** The smallest write sent that way (smaller ones through Java's buffer). */
    final int fixedWritesMin;
    /** Leg writes made with WRITE_FIXED (one per leg per write). */
    final AtomicLong fixedWrites = new AtomicLong();
    /**
     * Zero copy ({@code UBLK_MIRROR_MAPPED_WRITES}, on by default): a write not sent with
     * WRITE_FIXED is offered to the legs as a {@link TagSource} whose bytes the kernel copies out
     * of the request straight into a leg's mapping ({@link WriteSource#copyTo}; a leg on a memory
     * file system takes them so), not first into the tag's buffer.
     */
    final boolean mappedWrites;
    /** Leg writes copied from the request into a leg's mapping, and such copies that failed (then written from the buffer). */
    final AtomicLong mappedCopies = new AtomicLong(), mappedCopyFailures = new AtomicLong();
    /** Writes started with others of their batch in flight ({@link BlockTarget#startWrite}), then awaited together. */
    final AtomicLong writesStarted = new AtomicLong();
    // writes of the current batch in flight (queue thread only): tag, length, the write to await
    private final int[] startedTags, startedLens;
    private final WriteSource.Pending[] started;
    private int nstarted;
    private final TagSource[] sources;
    private volatile Throwable failure;

    /**
     * @param zc         the device was added with {@link UblkFeatures#ZERO_COPY_FLAGS}
     * @param direct     reads the shim serves itself, in either mode (its descriptor stays the
     *                   caller's, open until this queue is closed); null: every read comes here
     * @param tuning     the device's switches ({@link UblkDevice.Tuning}): how direct reads are
     *                   served (the shim's allowInline: may it read a memory file system's source
     *                   on the queue thread, see its set_read_source: 1 as it sees fit, 2 at every
     *                   size, 0 never; | {@link #READ_NO_MAP}: a pread even in zero copy), which
     *                   writes are served on the queue thread and how they reach the legs
     */
    UblkQueue(UblkNative n, int cdevFd, boolean ioctlEncode, int qid, int depth, int maxIoBytes, BlockTarget target,
              Executor workers, String name, boolean zc, BlockTarget.DirectRead direct, UblkDevice.Tuning tuning)
            throws IOException {
        this.n = n;
        this.inlineWrites = tuning.inlineWrites();
        this.batchWrites = tuning.batchWrites();
        int allowInline = Math.max(tuning.directReads(), 0);
        int fixedWritesMin = tuning.fixedWritesMin();
        this.qid = qid;
        this.depth = depth;
        this.target = target;
        this.workers = workers;
        this.zc = zc;
        this.mappedWrites = zc && tuning.mappedWrites();
        int[] err = new int[1];
        Pointer p = n.ubm_queue_open(cdevFd, ioctlEncode ? 1 : 0, qid, depth, zc ? 1 : 0, err);
        if (p == null || p.address() == 0) throw new IOException("ublk queue " + qid + ": " + UblkNative.err(err[0]));
        this.q = p;
        Runtime rt = Runtime.getRuntime(n);
        bufs = new ByteBuffer[depth];
        bufAddrs = new long[depth];
        for (int t = 0; t < depth; t++) {
            ByteBuffer b = ByteBuffer.allocateDirect(maxIoBytes + 4096).alignedSlice(4096);
            b.limit(maxIoBytes);
            bufs[t] = b.slice();
            bufAddrs[t] = Pointer.wrap(rt, bufs[t]).address();
            n.ubm_queue_set_buf(q, t, bufAddrs[t]);
        }
        int readMode = 0;
        if (direct != null) {
            int r = n.ubm_queue_set_read_source(q, direct.fd(), direct.offset(), direct.length(), allowInline);
            if (r < 0) {
                n.ubm_queue_close(q);
                throw new IOException("ublk queue " + qid + ": direct reads from " + direct.describe() + ": " + UblkNative.err(r));
            }
            readMode = r;
        }
        readsInline = readMode == READ_INLINE || readMode == READ_MAPPED;
        readsMapped = readMode == READ_MAPPED;
        readsInlineAll = readsInline && allowInline == 2;
        // copying mode: the tag buffers become the ring's fixed buffers (READ_FIXED, WRITE_FIXED)
        String regErr = null;
        if (!zc) {
            int r = n.ubm_queue_register_bufs(q, maxIoBytes);
            if (r < 0) regErr = "registering the tag buffers with io_uring failed: " + UblkNative.err(r);
        }
        bufsFixed = regErr == null;
        String off = null;
        this.fixedWritesMin = fixedWritesMin;
        if (fixedWritesMin < 0) off = "UBLK_MIRROR_FIXED_WRITES=off";
        else if (!inlineWrites || workers == null) off = "no writes on the queue thread";
        else off = regErr;
        fixedWritesOff = off;
        sources = new TagSource[depth];
        for (int t = 0; t < depth; t++) sources[t] = new TagSource(t);
        startedTags = new int[depth];
        startedLens = new int[depth];
        started = new WriteSource.Pending[depth];
        donePtr = Memory.allocateDirect(rt, 8 * depth, true);
        descPtr = Memory.allocateDirect(rt, UblkNative.DESC_SIZE * (depth + 1), true);
        doneTags = new int[depth];
        doneRes = new int[depth];
        thread = new Thread(this, name + "-q" + qid);
        thread.setDaemon(true);
    }

    /** Starts the thread; returns once every tag is fetched (START_DEV or END_USER_RECOVERY may follow). */
    void start() throws IOException {
        thread.start();
        try {
            fetched.await();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new java.io.InterruptedIOException("interrupted starting queue " + qid);
        }
        if (fetchResult != 0) throw new IOException("ublk queue " + qid + " FETCH_REQ: " + UblkNative.err(fetchResult));
    }

    @Override
    public void run() {
        fetchResult = n.ubm_queue_fetch_all(q);
        fetched.countDown();
        if (fetchResult != 0) return;
        int max = depth + 1;
        try {
            while (true) {
                int k;
                boolean stopping = stop;
                synchronized (this) {
                    k = ndone;
                    for (int i = 0; i < k; i++) {
                        donePtr.putInt(8L * i, doneTags[i]);
                        donePtr.putInt(8L * i + 4, doneRes[i]);
                    }
                    ndone = 0;
                    armed = true;
                }
                int r = n.ubm_queue_next(q, donePtr, k, descPtr, max, stopping ? 0 : 1000);
                if (r == -ENODEV || (stopping && r == 0)) break;
                if (r < 0) throw new IOException("ublk queue " + qid + ": " + UblkNative.err(r));
                if (r == 0) continue;
                batches.incrementAndGet();
                requests.addAndGet(r);
                for (int i = 0; i < r; i++) {
                    long o = (long) UblkNative.DESC_SIZE * i;
                    int tag = descPtr.getInt(o + UblkNative.DESC_TAG);
                    int opFlags = descPtr.getInt(o + UblkNative.DESC_OP_FLAGS);
                    long nsec = descPtr.getInt(o + UblkNative.DESC_NR_SECTORS) & 0xffffffffL;
                    long sector = descPtr.getLong(o + UblkNative.DESC_START_SECTOR);
                    if (workers == null) {
                        // inline (workers = 0): served here, one at a time; for comparison only
                        done(tag, serve(tag, opFlags, sector, nsec));
                    } else if (inlineWrites && (opFlags & 0xff) == OP_WRITE && (opFlags & F_FUA) == 0
                            && target.writeWouldNotWait(sector << 9, nsec << 9)) {
                        // a page-cache write: cheaper here than a hand-off and a wake-up there and back;
                        // from the request's buffer, started beside the batch's other writes where it can be
                        writesInline.incrementAndGet();
                        if (startWrite(tag, opFlags, sector << 9, nsec << 9)) continue;
                        awaitStarted(); // a write that may wait: never on a range this thread holds
                        done(tag, serve(tag, opFlags, sector, nsec));
                    } else {
                        workers.execute(() -> complete(tag, serve(tag, opFlags, sector, nsec)));
                    }
                }
                awaitStarted();
            }
        } catch (Throwable e) {
            failure = e;
        }
    }

    /** Serves one request on a worker; the result the kernel gets (bytes, or -errno). */
    int serve(int tag, int opFlags, long sector, long nsec) {
        int op = opFlags & 0xff;
        long off = sector << 9, len = nsec << 9;
        try {
            switch (op) {
                case OP_READ: {
                    ByteBuffer b = bufs[tag].duplicate().clear().limit((int) len);
                    target.read(off, b);
                    if (zc) userCopy(tag, len, true);
                    return (int) len;
                }
                case OP_WRITE: {
                    boolean fua = (opFlags & F_FUA) != 0;
                    // this thread owns the ring: the legs may take the bytes from the request's buffer
                    boolean fixed = fixedWritesOff == null && len >= fixedWritesMin && Thread.currentThread() == thread
                            && (opFlags & F_NEED_REG_BUF) == 0;
                    if (fixed || mappedWrites) {
                        // (or, zero copy, have the kernel copy them into a leg's mapping, on any thread)
                        TagSource src = sources[tag];
                        src.reset((int) len, fixed);
                        target.write(off, src, fua);
                        return (int) len;
                    }
                    if (zc) userCopy(tag, len, false);
                    ByteBuffer b = bufs[tag].duplicate().clear().limit((int) len);
                    target.write(off, b, fua);
                    return (int) len;
                }
                case OP_FLUSH:
                    target.flush();
                    return 0;
                case OP_DISCARD:
                    target.discard(off, len);
                    return 0;
                case OP_WRITE_ZEROES:
                    target.writeZeroes(off, len);
                    return 0;
                default:
                    return -EOPNOTSUPP;
            }
        } catch (IOException | RuntimeException e) {
            // the engine has already degraded or logged; the kernel gets an I/O error
            return e instanceof IllegalArgumentException ? -EINVAL : -EIO;
        }
    }

    /**
     * Starts a WRITE from the request's buffer without waiting for it ({@link BlockTarget#startWrite}),
     * to be awaited with the batch's others; true when it was started, or failed at once (then it
     * is done with its error); false when it was not started (then it is served as any other).
     */
    private boolean startWrite(int tag, int opFlags, long off, long len) {
        if (!batchWrites || fixedWritesOff != null || len < fixedWritesMin || (opFlags & F_NEED_REG_BUF) != 0) {
            return false;
        }
        TagSource src = sources[tag];
        src.reset((int) len, true);
        WriteSource.Pending p;
        try {
            p = target.startWrite(off, src);
        } catch (IOException | RuntimeException e) {
            // the engine has already degraded or logged; the kernel gets an I/O error
            done(tag, e instanceof IllegalArgumentException ? -EINVAL : -EIO);
            return true;
        }
        if (p == null) return false;
        startedTags[nstarted] = tag;
        startedLens[nstarted] = (int) len;
        started[nstarted++] = p;
        writesStarted.incrementAndGet();
        return true;
    }

    /** Waits for the writes started in this batch, in the order started, and marks each done. */
    private void awaitStarted() {
        for (int i = 0; i < nstarted; i++) {
            int res = startedLens[i];
            try {
                started[i].await();
            } catch (IOException | RuntimeException e) {
                res = -EIO;
            }
            started[i] = null;
            done(startedTags[i], res);
        }
        nstarted = 0;
    }

    /** Zero copy: the request's data into the tag's buffer (a write), or the buffer into the request (a read). */
    private void userCopy(int tag, long len, boolean toRequest) throws IOException {
        long r = n.ubm_queue_copy(q, tag, bufAddrs[tag], len, toRequest ? 1 : 0);
        if (r != len) {
            throw new IOException("ublk queue " + qid + " tag " + tag + ": copying " + len + " bytes "
                    + (toRequest ? "to" : "from") + " the request: " + (r < 0 ? UblkNative.err((int) r) : r + " bytes"));
        }
    }

    /**
     * A WRITE's bytes as they sit in the request's fixed buffer: the legs' file stores write them
     * with the shim's WRITE_FIXED; anything else gets them in the tag's buffer (zero copy: copied
     * out of the request on first asking). Used only on the queue thread, while serving its tag.
     */
    private final class TagSource implements WriteSource {
        private final int tag;
        private int len;
        private boolean inBuffer;
        /** The shim may write the bytes with WRITE_FIXED (this thread owns the ring; the size is worth it). */
        private boolean fixed;

        TagSource(int tag) {
            this.tag = tag;
        }

        void reset(int len, boolean fixed) {
            this.len = len;
            this.fixed = fixed;
            this.inBuffer = !zc; // copying mode: the kernel has put the bytes in the buffer
        }

        @Override
        public int length() {
            return len;
        }

        @Override
        public ByteBuffer buffer() throws IOException {
            if (!inBuffer) {
                userCopy(tag, len, false);
                inBuffer = true;
            }
            return bufs[tag].duplicate().clear().limit(len);
        }

        @Override
        public Pending start(int fd, long pos) throws IOException {
            if (!fixed || Thread.currentThread() != thread) return null; // only the ring's own thread may submit
            int slot = n.ubm_queue_write_start(q, tag, fd, pos, len);
            if (slot == -ENOBUFS || slot == -EBUSY) return null; // nothing started
            if (slot < 0) throw failed(slot);
            return () -> {
                long r = n.ubm_queue_write_wait(q, slot);
                if (r != len) throw failed(r);
                fixedWrites.incrementAndGet();
            };
        }

        @Override
        public boolean copyTo(long address) {
            if (!mappedWrites) return false;
            // a pread of the request through /dev/ublkcN into the mapping: a fault there is the kernel's (EFAULT)
            long r = n.ubm_queue_copy(q, tag, address, len, 0);
            if (r != len) {
                mappedCopyFailures.incrementAndGet();
                return false;
            }
            mappedCopies.incrementAndGet();
            return true;
        }

        private IOException failed(long r) {
            return new IOException("io_uring WRITE_FIXED of " + len + " bytes from ublk queue " + qid + " tag " + tag + ": "
                    + (r < 0 ? UblkNative.err((int) r) : r + " bytes"));
        }

        @Override
        public boolean writeTo(int fd, long pos) throws IOException {
            if (!fixed || Thread.currentThread() != thread) return false; // only the ring's own thread may submit
            long r = n.ubm_queue_write_fixed(q, tag, fd, pos, len);
            if (r == -ENOBUFS || r == -EBUSY) return false; // nothing written: the caller writes buffer()
            if (r != len) throw failed(r);
            fixedWrites.incrementAndGet();
            return true;
        }
    }

    /** Zero copy: {reads served in the kernel, reads handed back to Java after a failed or short direct read}. */
    long[] directStats() {
        long[] out = new long[2];
        n.ubm_queue_stats(q, out);
        return out;
    }

    /** On the queue thread: the request on {@code tag} is done (committed with the next batch). */
    private synchronized void done(int tag, int result) {
        doneTags[ndone] = tag;
        doneRes[ndone] = result;
        ndone++;
    }

    /** From a worker: the request on {@code tag} is done. */
    void complete(int tag, int result) {
        boolean wake;
        synchronized (this) {
            doneTags[ndone] = tag;
            doneRes[ndone] = result;
            ndone++;
            wake = armed;
            armed = false;
        }
        if (wake) {
            wakes.incrementAndGet();
            n.ubm_queue_wake(q);
        }
    }

    /** After STOP_DEV (or to abandon the device): the thread commits what is left and ends. */
    void stop() {
        stop = true;
        n.ubm_queue_wake(q);
    }

    /** Waits for the thread, then frees the ring (which cancels fetches still posted). */
    void join(long millis) throws InterruptedException {
        thread.join(millis);
    }

    boolean alive() {
        return thread.isAlive();
    }

    void close() {
        if (!thread.isAlive()) n.ubm_queue_close(q);
    }

    Throwable failure() {
        return failure;
    }
}
