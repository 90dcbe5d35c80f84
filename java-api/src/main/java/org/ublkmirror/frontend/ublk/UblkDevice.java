package org.ublkmirror.frontend.ublk;

import org.ublkmirror.frontend.BlockTarget;

import java.io.Closeable;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.ThreadPoolExecutor;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * A ublk block device (/dev/ublkbN) serving a {@link BlockTarget}: the control device, one
 * {@link UblkQueue} per hardware queue, and a pool of workers that run the requests in the
 * target. Made by {@link #create} (ADD_DEV, SET_PARAMS, queues fetching, START_DEV) or
 * {@link #recover} (a device left by a killed server: START_USER_RECOVERY, queues fetching,
 * END_USER_RECOVERY). {@link #close} stops and deletes it.
 */
public final class UblkDevice implements Closeable {

    /**
     * Tunables.
     *
     * @param queues     hardware queues (one thread and one io_uring each)
     * @param depth      tags per queue: requests the kernel may have outstanding on one queue
     * @param maxIoBytes largest request (one direct buffer of this size per tag)
     * @param workers    threads running requests in the target, shared by the queues; 0: each
     *                   queue thread serves its requests itself, one at a time (for comparison)
     * @param recovery   add the device with UBLK_F_USER_RECOVERY | UBLK_F_USER_RECOVERY_REISSUE
     * @param zeroCopy   add it with USER_COPY | AUTO_BUF_REG where the kernel offers both (6.16+,
     *                   ioctl encoding): reads served in the kernel, no copy through our buffers
     */
    public record Options(int queues, int depth, int maxIoBytes, int workers, boolean recovery, boolean zeroCopy) {
        public Options {
            if (queues < 1 || queues > 32) throw new IllegalArgumentException("--queues must be 1..32: " + queues);
            if (depth < 1 || depth > 4096) throw new IllegalArgumentException("--depth must be 1..4096: " + depth);
            if (maxIoBytes < 4096 || maxIoBytes > (1 << 20) || Integer.bitCount(maxIoBytes) != 1) {
                throw new IllegalArgumentException("--max-io must be a power of two, 4 KiB..1 MiB: " + maxIoBytes);
            }
            if ((long) queues * depth * maxIoBytes > (256L << 20)) {
                throw new IllegalArgumentException("--queues x --depth x --max-io (" + queues + " x " + depth + " x "
                        + (maxIoBytes >> 10) + " KiB) needs more than 256 MiB of buffers; lower --depth, --queues or --max-io");
            }
            if (workers < 0 || workers > 1024) throw new IllegalArgumentException("workers must be 0..1024: " + workers);
        }

        public static Options defaults() {
            return new Options(1, 64, defaultMaxIo(1, 64), defaultWorkers(), true, true);
        }

        /** Options with {@code queues} and {@code depth}, the rest as {@link #defaults()}: the largest request {@link #defaultMaxIo}. */
        public static Options of(int queues, int depth) {
            return new Options(queues, depth, defaultMaxIo(queues, depth), defaultWorkers(), true, true);
        }

        /**
         * The largest request when not given ({@code --max-io}): 1 MiB, as md's members' 1280 KiB
         * lets a 1 MiB write through whole (half as many requests as 512 KiB: sequential 1 MiB writes
         * 0.62 -> 0.74-0.79x md raid1 in the 7.3 guest, bench/RESULTS.md); smaller where {@code queues x
         * depth} buffers of 1 MiB would pass the 256 MiB cap, down to 4 KiB.
         */
        public static int defaultMaxIo(int queues, int depth) {
            long fit = (256L << 20) / Math.max(1L, (long) queues * depth);
            int b = 1 << 20;
            while (b > 4096 && b > fit) b >>= 1;
            return b;
        }

        /**
         * Twice the CPUs, at least 4 and at most 16 ({@code mirrorctl start --workers N} sets another count).
         * Local legs' buffered writes do not block, so workers beyond the CPUs only wait: on a
         * 2-vCPU guest 16 of them spent the time spinning on the engine's locks and the leg
         * file's inode lock, and 4 wrote 1.2-1.6x faster (docs/frontend-ublk.md "Workers").
         * At least 4: a FLUSH or FUA write waits on the disk, and the others go on meanwhile.
         */
        public static int defaultWorkers() {
            return Math.max(4, Math.min(16, 2 * Runtime.getRuntime().availableProcessors()));
        }

        public Options withQueues(int q) {
            return new Options(q, depth, maxIoBytes, workers, recovery, zeroCopy);
        }

        public Options withDepth(int d) {
            return new Options(queues, d, maxIoBytes, workers, recovery, zeroCopy);
        }

        public Options withMaxIo(int bytes) {
            return new Options(queues, depth, bytes, workers, recovery, zeroCopy);
        }

        /** These options with the queues, depth and largest request the kernel records for the device. */
        Options as(UblkCtrl.Info info) {
            return new Options(info.queues(), info.depth(), info.maxIoBytes() > 0 ? info.maxIoBytes() : maxIoBytes, workers, recovery, zeroCopy);
        }

        public Options withWorkers(int w) {
            return new Options(queues, depth, maxIoBytes, w, recovery, zeroCopy);
        }

        public Options withRecovery(boolean r) {
            return new Options(queues, depth, maxIoBytes, workers, r, zeroCopy);
        }

        public Options withZeroCopy(boolean z) {
            return new Options(queues, depth, maxIoBytes, workers, recovery, z);
        }
    }

    private final UblkCtrl ctrl;
    private final int devId;
    private final int cdevFd;
    private final List<UblkQueue> queues = new ArrayList<>();
    private final ExecutorService workers;
    private final boolean recovered;
    private final boolean zeroCopy;
    /** The target's direct-read file (reads served in the shim), shared by the queues; closed after them. */
    private BlockTarget.DirectRead direct;
    private boolean closed;
    /** The queues, depth and request size the device runs with (a recovered device's own). */
    private Options options;
    private Tuning tuning = Tuning.DEFAULT;
    /** The disk's I/O scheduler as {@link #setScheduler} left it (null: a recovered device, not touched). */
    private volatile String scheduler;

    private UblkDevice(UblkCtrl ctrl, int devId, int cdevFd, ExecutorService workers, boolean recovered, boolean zeroCopy) {
        this.ctrl = ctrl;
        this.devId = devId;
        this.cdevFd = cdevFd;
        this.workers = workers;
        this.recovered = recovered;
        this.zeroCopy = zeroCopy;
    }

    /** True when the device runs in zero-copy mode (USER_COPY | AUTO_BUF_REG). */
    public boolean zeroCopy() {
        return zeroCopy;
    }

    /** The disk's I/O scheduler as START_DEV's caller set it, e.g. "none (was mq-deadline)"; null after a recovery. */
    public String scheduler() {
        return scheduler;
    }

    /**
     * Gives the new disk /dev/ublkbN the I/O scheduler {@code want} (null: {@code none}; {@code keep}:
     * the kernel's choice). A ublk disk with one hardware queue gets mq-deadline from the kernel;
     * in front of the engine, which orders and tracks writes itself, it only adds work and a
     * dispatch through the kblockd workqueue: measured 2.3-2.5x fewer 4 KiB requests/s on a 7.3
     * kernel, 1.2-1.4x on 6.12 (bench/RESULTS.md). The kernel gives NVMe and loop disks none too.
     * Not fatal: returns what happened, e.g. "none (was mq-deadline)" or "mq-deadline (unchanged: ...)".
     */
    static String setScheduler(int id, String want) {
        String w = want == null || want.isBlank() ? "none" : want.trim();
        Path p = Path.of("/sys/block/ublkb" + id + "/queue/scheduler");
        String was = "?";
        try {
            was = activeScheduler(java.nio.file.Files.readString(p));
            if (w.equals("keep") || w.equals(was)) return was;
            java.nio.file.Files.writeString(p, w);
            return activeScheduler(java.nio.file.Files.readString(p)) + " (was " + was + ")";
        } catch (IOException e) {
            return was + " (unchanged: cannot set " + w + " in " + p + ": " + e.getMessage() + ")";
        }
    }

    /** The bracketed entry of a queue/scheduler line ("none [mq-deadline] kyber" -> "mq-deadline"). */
    static String activeScheduler(String line) {
        String l = line.trim();
        int a = l.indexOf('['), b = l.indexOf(']');
        return a >= 0 && b > a ? l.substring(a + 1, b) : l;
    }

    /** Where the shim serves reads from without Java (null: every read goes through the target). */
    public String directReadSource() {
        return direct == null ? null : direct.describe();
    }

    /**
     * The shim's direct reads are a pread on the queue thread (the source is on tmpfs or ramfs;
     * up to 64 KiB where fixed buffers serve the larger ones), not an io_uring read.
     */
    public boolean directReadsInline() {
        synchronized (this) {
            return direct != null && !queues.isEmpty() && queues.get(0).readsInline;
        }
    }

    /** How reads are served, one phrase for the start-up lines of the daemon and UblkServe. */
    public String readsDescription() {
        String src = directReadSource();
        if (src == null) return "reads through Java";
        UblkQueue q;
        synchronized (this) {
            q = queues.isEmpty() ? null : queues.get(0);
        }
        boolean inline = directReadsInline();
        // a fixed-buffer destination (zero copy, or registered tag buffers): pread only up to 64 KiB, READ_FIXED above
        String each = q != null && q.readsMapped ? "written into the request from a mapping of the file on the queue thread"
                : "a pread on the queue thread";
        String how = !inline ? "" : q.readsInlineAll || !q.bufsFixed ? " (" + each + ": a memory file system)"
                : " (up to 64 KiB " + each + ": a memory file system)";
        if (zeroCopy) return "reads served in the kernel from " + src + how;
        return "reads served by the shim from " + src + (inline ? how : q != null && q.bufsFixed ? " (io_uring READ_FIXED)" : " (io_uring)");
    }

    /** {reads served in the shim, direct reads handed back to the target after a failure}, all queues. */
    public long[] directReads() {
        long[] sum = new long[2];
        synchronized (this) {
            if (closed) return sum;
            for (UblkQueue q : queues) {
                long[] s = q.directStats();
                sum[0] += s[0];
                sum[1] += s[1];
            }
        }
        return sum;
    }

    /** The options the device runs with: queues, depth and largest request are the kernel's record of it. */
    public Options options() {
        return options;
    }

    /** Writes that would not wait are served on the queue thread (not {@code UBLK_MIRROR_INLINE_WRITES=off}). */
    public boolean inlineWrites() {
        return tuning.inlineWrites();
    }

    public int id() {
        return devId;
    }

    public Path device() {
        return Path.of("/dev/ublkb" + devId);
    }

    /** True when this device was taken over from a killed server (user recovery). */
    public boolean recovered() {
        return recovered;
    }

    public UblkCtrl ctrl() {
        return ctrl;
    }

    static int log2(int v) {
        if (Integer.bitCount(v) != 1) throw new IllegalArgumentException("not a power of two: " + v);
        return Integer.numberOfTrailingZeros(v);
    }

    private static ExecutorService pool(int n, String name) {
        if (n == 0) return null;
        AtomicInteger seq = new AtomicInteger();
        ThreadPoolExecutor p = new ThreadPoolExecutor(n, n, 60, TimeUnit.SECONDS, new LinkedBlockingQueue<>(), r -> {
            Thread t = new Thread(r, name + "-w" + seq.getAndIncrement());
            t.setDaemon(true);
            return t;
        });
        p.prestartAllCoreThreads();
        return p;
    }

    /** A new device: ADD_DEV, SET_PARAMS, queues fetching, START_DEV. Undone on failure. */
    public static UblkDevice create(BlockTarget target, Options o, String name) throws IOException {
        Tuning tuning = Tuning.fromEnv(); // a bad value is refused before the device exists
        long size = target.sizeBytes();
        int bs = target.blockSize();
        if (bs < 512 || bs > 4096 || Integer.bitCount(bs) != 1) {
            throw new IllegalArgumentException("ublk takes block sizes 512..4096; the target's is " + bs);
        }
        if (size <= 0 || size % bs != 0) throw new IllegalArgumentException("target size " + size + " is not a multiple of " + bs);
        UblkCtrl ctrl = UblkCtrl.open();
        int id = -1;
        UblkDevice dev = null;
        try {
            long flags = o.recovery() ? UblkFeatures.USER_RECOVERY | UblkFeatures.USER_RECOVERY_REISSUE : 0;
            if (zeroCopyOffered(ctrl, o)) flags |= UblkFeatures.ZERO_COPY_FLAGS;
            id = ctrl.addDev(-1, o.queues(), o.depth(), o.maxIoBytes(), flags);
            // logical = physical = the mirror's block size: the kernel then sends only aligned I/O.
            // VOLATILE_CACHE + FUA: the block layer passes FLUSH and FUA through to us.
            int attrs = UblkAttrs.VOLATILE_CACHE | UblkAttrs.FUA;
            int maxDiscard = (64 << 20) >> 9;
            ctrl.setParams(id, size, log2(bs), log2(bs), o.maxIoBytes() >> 9, attrs, bs, maxDiscard, maxDiscard);
            UblkCtrl.Info info = ctrl.info(id);
            dev = attachQueues(ctrl, id, info == null ? o : o.as(info), target, name, false,
                    (flags & UblkFeatures.AUTO_BUF_REG) != 0, tuning);
            ctrl.startDev(id, (int) ProcessHandle.current().pid());
            dev.scheduler = setScheduler(id, System.getenv("UBLK_MIRROR_IO_SCHEDULER"));
            return dev;
        } catch (IOException | RuntimeException e) {
            if (dev != null) dev.teardown(true);
            else if (id >= 0) {
                try {
                    ctrl.delDev(id);
                } catch (IOException s) {
                    e.addSuppressed(s);
                }
            }
            ctrl.close();
            throw e;
        }
    }

    /**
     * Takes over device {@code devId}, left quiesced by a killed server that had added it with
     * USER_RECOVERY: waits (up to {@code waitMillis}) until the kernel has quiesced it and
     * released the old server's /dev/ublkcN, then START_USER_RECOVERY, queues fetching,
     * END_USER_RECOVERY. The queue count and depth are the device's. The requests the old server
     * held are reissued to us (USER_RECOVERY_REISSUE).
     */
    public static UblkDevice recover(BlockTarget target, int devId, Options o, String name, long waitMillis) throws IOException {
        Tuning tuning = Tuning.fromEnv(); // refused before the device is touched
        UblkCtrl ctrl = UblkCtrl.open();
        try {
            UblkCtrl.Info info = ctrl.info(devId);
            if (info == null) throw new IOException("ublk device " + devId + " is gone");
            if ((info.flags() & UblkFeatures.USER_RECOVERY) == 0) {
                throw new IOException("ublk device " + devId + " was added without USER_RECOVERY");
            }
            long deadline = System.currentTimeMillis() + waitMillis;
            while (true) {
                info = ctrl.info(devId);
                if (info == null) throw new IOException("ublk device " + devId + " went away during recovery");
                if (info.state() == UblkCtrl.STATE_QUIESCED && ctrl.startRecovery(devId)) break;
                if (System.currentTimeMillis() > deadline) {
                    throw new IOException("ublk device " + devId + " is " + info.stateName()
                            + " and refuses START_USER_RECOVERY after " + waitMillis / 1000 + " s (is its old server still running?)");
                }
                try {
                    Thread.sleep(100);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    throw new java.io.InterruptedIOException("interrupted waiting for ublk device " + devId);
                }
            }
            // the device's mode is the one its first server chose at ADD_DEV
            UblkDevice dev = attachQueues(ctrl, devId, o.as(info), target, name, true,
                    (info.flags() & UblkFeatures.AUTO_BUF_REG) != 0, tuning);
            try {
                ctrl.endRecovery(devId, (int) ProcessHandle.current().pid());
            } catch (IOException e) {
                dev.abandonQueues();
                throw e;
            }
            return dev;
        } catch (IOException | RuntimeException e) {
            ctrl.close();
            throw e;
        }
    }

    /**
     * Zero copy is used when asked for, the kernel offers USER_COPY and AUTO_BUF_REG (GET_FEATURES,
     * so the ioctl encoding), and {@code UBLK_MIRROR_ZERO_COPY} is not {@code off}.
     */
    static boolean zeroCopyOffered(UblkCtrl ctrl, Options o) {
        if (!o.zeroCopy() || "off".equals(System.getenv("UBLK_MIRROR_ZERO_COPY"))) return false;
        return UblkFeatures.offersZeroCopy(ctrl.features(), ctrl.ioctlEncoding());
    }

    /**
     * The switches an operator or a benchmark sets in the environment (docs/frontend-ublk.md),
     * read and checked once per device, before it is added or recovered; each value that is not
     * understood is refused in one line.
     *
     * @param directReads    {@code UBLK_MIRROR_DIRECT_READS} ({@link #directReadsMode}): -1 every read
     *                       through Java, else the shim's allowInline
     * @param inlineWrites   {@code UBLK_MIRROR_INLINE_WRITES} (on|off): writes that would not wait
     *                       are served on the queue thread ("Writes on the queue thread")
     * @param fixedWritesMin {@code UBLK_MIRROR_FIXED_WRITES} ({@link #fixedWritesMin})
     * @param batchWrites    {@code UBLK_MIRROR_BATCH_WRITES} (on|off): the writes of one batch that go
     *                       to file legs from the request's buffer are all started before any is
     *                       waited for ({@link BlockTarget#startWrite}; "Writes of a batch in flight together")
     * @param mappedWrites   {@code UBLK_MIRROR_MAPPED_WRITES} (on|off): in zero copy, a write not sent
     *                       with WRITE_FIXED reaches a leg on a memory file system as one copy from
     *                       the request's pages into a mapping of the leg ("Writes into a mapping")
     */
    record Tuning(int directReads, boolean inlineWrites, int fixedWritesMin, boolean batchWrites, boolean mappedWrites) {
        static Tuning fromEnv() {
            return new Tuning(UblkDevice.directReadsMode(System.getenv("UBLK_MIRROR_DIRECT_READS")),
                    UblkDevice.onOff("UBLK_MIRROR_INLINE_WRITES", System.getenv("UBLK_MIRROR_INLINE_WRITES")),
                    UblkDevice.fixedWritesMin(System.getenv("UBLK_MIRROR_FIXED_WRITES")),
                    UblkDevice.batchWrites(System.getenv("UBLK_MIRROR_BATCH_WRITES")),
                    UblkDevice.onOff("UBLK_MIRROR_MAPPED_WRITES", System.getenv("UBLK_MIRROR_MAPPED_WRITES")));
        }

        /** Every default: what a device gets with none of the variables set. */
        static final Tuning DEFAULT = new Tuning(1, true, FIXED_WRITES_DEFAULT_MIN, true, true);
    }

    /**
     * {@code UBLK_MIRROR_DIRECT_READS}: unset or {@code on}: 1 (the shim's allowInline: it reads a
     * memory file system on the queue thread up to 64 KiB); {@code off}: -1 (every read through
     * Java); {@code uring}: 0 (the io_uring read on a memory file system too); {@code inline}: 2
     * (inline at every size); {@code pread}: 1 with {@link UblkQueue#READ_NO_MAP} (zero copy: a
     * pread into the tag's buffer, not a write into the request from a mapping of the file). All
     * but the default for comparison. Anything else is refused in one line.
     */
    static int directReadsMode(String v) {
        if (v == null || v.isEmpty() || v.equals("on")) return 1;
        return switch (v) {
            case "off" -> -1;
            case "uring" -> 0;
            case "inline" -> 2;
            case "pread" -> 1 | UblkQueue.READ_NO_MAP;
            default -> throw new IllegalArgumentException("UBLK_MIRROR_DIRECT_READS=" + v
                    + " is not understood; use on, off, uring, inline or pread");
        };
    }

    /** {@code UBLK_MIRROR_BATCH_WRITES}: unset, {@code on} or {@code off}; anything else is refused in one line. */
    static boolean batchWrites(String v) {
        return onOff("UBLK_MIRROR_BATCH_WRITES", v);
    }

    /** Variable {@code name}: unset, {@code on} (true) or {@code off}; anything else is refused in one line. */
    static boolean onOff(String name, String v) {
        if (v == null || v.isEmpty() || v.equals("on")) return true;
        if (v.equals("off")) return false;
        throw new IllegalArgumentException(name + "=" + v + " is not understood; use on or off");
    }

    /**
     * Writes served on the queue thread reach file legs from the request's buffer (io_uring
     * WRITE_FIXED) from this size up; smaller ones through Java's buffer (pwrite). On a memory
     * file system io_uring hands every buffered write to an io-wq thread, and under TCG that hop
     * costs more than the copy it saves below 64 KiB (7.3 guest, tmpfs legs: 0.33x at 4 KiB,
     * 0.55x at 16 KiB, 1.22x at 64 KiB, 2.8x at 512 KiB; bench/RESULTS.md).
     */
    static final int FIXED_WRITES_DEFAULT_MIN = 64 << 10;

    /**
     * {@code UBLK_MIRROR_FIXED_WRITES}: unset or {@code on}: {@link #FIXED_WRITES_DEFAULT_MIN};
     * {@code off}: -1 (every write through Java's buffer, for comparison); a size ({@code 4k},
     * {@code 65536}, {@code 0}): the smallest write so written. docs/frontend-ublk.md "Leg writes
     * from the request's buffer".
     */
    static int fixedWritesMin(String v) {
        if (v == null || v.isEmpty() || v.equals("on")) return FIXED_WRITES_DEFAULT_MIN;
        if (v.equals("off")) return -1;
        try {
            String t = v.toLowerCase(java.util.Locale.ROOT);
            int mult = 1;
            if (t.endsWith("k")) {
                mult = 1024;
                t = t.substring(0, t.length() - 1);
            } else if (t.endsWith("m")) {
                mult = 1 << 20;
                t = t.substring(0, t.length() - 1);
            }
            long b = Long.parseLong(t) * mult;
            if (b >= 0 && b <= Integer.MAX_VALUE) return (int) b;
        } catch (NumberFormatException e) {
            // below
        }
        throw new IllegalArgumentException("UBLK_MIRROR_FIXED_WRITES=" + v + " is not understood; use on, off,"
                + " or the smallest write to send from the request's buffer (e.g. 64k, 0 for all)");
    }

    private static UblkDevice attachQueues(UblkCtrl ctrl, int id, Options o, BlockTarget target, String name, boolean recovered,
                                           boolean zc, Tuning tuning) throws IOException {
        int fd = ctrl.lib().ubm_cdev_open(id);
        if (fd < 0) throw new IOException("cannot open /dev/ublkc" + id + ": " + UblkNative.err(fd));
        UblkDevice dev = new UblkDevice(ctrl, id, fd, pool(o.workers(), name), recovered, zc);
        dev.options = o;
        dev.tuning = tuning;
        try {
            if (tuning.directReads() >= 0) dev.direct = target.directRead();
            for (int q = 0; q < o.queues(); q++) {
                UblkQueue uq = new UblkQueue(ctrl.lib(), fd, ctrl.ioctlEncoding(), q, o.depth(), o.maxIoBytes(), target, dev.workers, name,
                        zc, dev.direct, tuning);
                dev.queues.add(uq);
                uq.start();
            }
        } catch (IOException | RuntimeException e) {
            dev.abandonQueues();
            throw e;
        }
        return dev;
    }

    /**
     * Requests served (all queues), batches (native calls that returned requests), wake-ups,
     * writes served on the queue threads, leg writes with WRITE_FIXED, writes started with their
     * batch, leg writes copied from the request into a mapping, such copies that failed (then
     * written through Java's buffer).
     */
    public long[] counters() {
        long r = 0, b = 0, w = 0, i = 0, f = 0, t = 0, m = 0, mf = 0;
        for (UblkQueue q : queues) {
            r += q.requests.get();
            b += q.batches.get();
            w += q.wakes.get();
            i += q.writesInline.get();
            f += q.fixedWrites.get();
            t += q.writesStarted.get();
            m += q.mappedCopies.get();
            mf += q.mappedCopyFailures.get();
        }
        return new long[] {r, b, w, i, f, t, m, mf};
    }

    /**
     * How writes served on the queue thread reach the legs, one phrase for the start-up lines:
     * from the request's buffer (WRITE_FIXED), or through Java's buffer and why.
     */
    public String writesDescription() {
        synchronized (this) {
            if (queues.isEmpty()) return "no queues";
            UblkQueue q = queues.get(0);
            int min = q.fixedWritesMin;
            String mapped = "";
            if (q.mappedWrites) {
                // the writes not sent with WRITE_FIXED (with it for every size: those on the workers)
                String which = q.fixedWritesOff != null ? "writes" : min > 512 ? "smaller writes" : "writes on the workers";
                mapped = "; " + which + " copied from the request's pages into a mapping of a leg on a memory file system";
            }
            if (q.fixedWritesOff != null) return "legs written through Java's buffer (" + q.fixedWritesOff + ")" + mapped;
            String from = min <= 512 ? "" : " from " + (min % 1024 == 0 ? (min / 1024) + " KiB" : min + " bytes");
            return "file legs written from the request's " + (zeroCopy ? "pages" : "buffer") + " (io_uring WRITE_FIXED" + from
                    + (tuning.batchWrites() ? "; a batch's writes in flight together" : "; one write at a time, UBLK_MIRROR_BATCH_WRITES=off") + ")"
                    + mapped;
        }
    }

    /** Stops the queue threads and frees rings and the char device, without STOP_DEV. */
    private void abandonQueues() {
        for (UblkQueue q : queues) q.stop();
        for (UblkQueue q : queues) {
            try {
                q.join(10_000);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
            q.close();
        }
        queues.clear();
        if (direct != null) ctrl.lib().ubm_close_fd(direct.fd());
        direct = null;
        ctrl.lib().ubm_close_fd(cdevFd);
        if (workers != null) workers.shutdown();
    }

    private void teardown(boolean delete) throws IOException {
        IOException first = null;
        if (delete) {
            try {
                // the queues keep serving while STOP_DEV removes the disk (it flushes the page cache)
                ctrl.stopDev(devId);
            } catch (IOException e) {
                first = e;
            }
        }
        abandonQueues();
        if (delete) {
            try {
                ctrl.delDev(devId);
            } catch (IOException e) {
                if (first == null) first = e;
            }
        }
        ctrl.close();
        if (first != null) throw first;
    }

    /** STOP_DEV (the disk goes away), queues end, DEL_DEV. Callers have checked nobody has it mounted. */
    @Override
    public synchronized void close() throws IOException {
        if (closed) return;
        closed = true;
        teardown(true);
    }
}
