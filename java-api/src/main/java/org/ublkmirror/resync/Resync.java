package org.ublkmirror.resync;

import org.roaringbitmap.longlong.ImmutableLongBitmapDataProvider;
import org.ublkmirror.fork.RangeLock;
import org.ublkmirror.leg.BlockIO;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.ArrayDeque;
import java.util.List;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * Copies the dirty blocks primary to secondary, in ascending order, while the application keeps
 * writing.
 *
 * <h2>Why copying under the range lock is safe</h2>
 * The application's write path holds the shared {@link RangeLock} over a range from before its
 * first leg write until both legs have answered. Resync takes the same lock over each copy, from
 * before it reads the primary until the secondary write returned. So for any block, a resync
 * copy and an application write are totally ordered: either the copy reads the primary after the
 * write reached both legs (and copies the new data, a harmless rewrite), or the write comes after
 * the copy and overwrites both legs. Stale data is never written over newer data.
 *
 * <h2>State machine</h2>
 * IDLE -(run/start)-> RUNNING -(pause)-> PAUSED -(resume)-> RUNNING;
 * RUNNING/PAUSED -> DONE (all copied, flushed, checkpointed) | CANCELLED (cancel(): stops after
 * the copies in flight, flushes, checkpoints) | FAILED (an I/O error; what was checkpointed stays
 * done). A Resync runs once; resume is a new Resync over the remaining dirty set.
 *
 * <h2>Window</h2>
 * Up to {@code Options.window} copies of distinct extents are in flight at once, each under the
 * range lock of its own extent (see {@link Window}); with {@code Options.adaptive} (the default)
 * how many of them follows the copies' latency ({@link WindowControl}: about one copy queued at the
 * bottleneck, so application writes to the secondary do not wait behind a deep queue of copies).
 * Pause and cancel first let the copies in
 * flight end.
 *
 * <h2>Flush before checkpoint</h2>
 * See {@link #checkpoint()}. A checkpoint covers exactly the copies reported to the listener
 * before its {@link ResyncListener#barrier() barrier}, which comes before its flush is issued.
 *
 * <h2>Pipelined checkpoints</h2>
 * By default ({@link Options#pipelined}) the copy loop does not stand still for a checkpoint:
 * at each interval it calls the barrier and hands the flush and the persist to a helper thread,
 * and copies on; the next interval waits for that checkpoint only if it has not ended by then.
 * Copies that complete after the barrier are not covered by its flush and stay dirty in the
 * persisted log until the next checkpoint (the listener keeps them pending). At the end of the
 * run, and on cancel or failure, the window is drained and a last checkpoint made as before.
 */
public final class Resync {

    /**
     * Tuning knobs. {@code window}: how many copies may be in flight at once (each under the range
     * lock of its own extent, with its own buffer); 1 is the old one-at-a-time loop.
     */
    public record Options(long checkpointBytes, long checkpointMillis, long maxBlocksPerCopy,
                          RateLimiter.Clock clock, int window, boolean pipelined, boolean adaptive) {
        public static final int DEFAULT_WINDOW = 16;
        public static final Options DEFAULT = new Options(64L << 20, 5_000, Extents.DEFAULT_MAX_BLOCKS,
                RateLimiter.Clock.SYSTEM, DEFAULT_WINDOW, true, true);

        public Options(long checkpointBytes, long checkpointMillis, long maxBlocksPerCopy, RateLimiter.Clock clock, int window) {
            this(checkpointBytes, checkpointMillis, maxBlocksPerCopy, clock, window, true, true);
        }

        public Options {
            if (checkpointBytes <= 0 || checkpointMillis <= 0 || maxBlocksPerCopy <= 0 || window <= 0) {
                throw new IllegalArgumentException("resync options must be positive: checkpointBytes="
                        + checkpointBytes + " checkpointMillis=" + checkpointMillis + " maxBlocksPerCopy=" + maxBlocksPerCopy
                        + " window=" + window);
            }
            if (clock == null) {
                clock = RateLimiter.Clock.SYSTEM;
            }
        }

        public Options withCheckpointBytes(long b) {
            return new Options(b, checkpointMillis, maxBlocksPerCopy, clock, window, pipelined, adaptive);
        }

        public Options withCheckpointMillis(long ms) {
            return new Options(checkpointBytes, ms, maxBlocksPerCopy, clock, window, pipelined, adaptive);
        }

        public Options withMaxBlocksPerCopy(long n) {
            return new Options(checkpointBytes, checkpointMillis, n, clock, window, pipelined, adaptive);
        }

        public Options withClock(RateLimiter.Clock c) {
            return new Options(checkpointBytes, checkpointMillis, maxBlocksPerCopy, c, window, pipelined, adaptive);
        }

        /**
         * Pipelined checkpoints (default on): the copy loop goes on while a checkpoint's flush
         * and persist run on a helper thread (see the class comment). Off: every checkpoint
         * drains the window and the loop waits for the flush and the persist (the A/B baseline).
         */
        public Options withPipelinedCheckpoints(boolean on) {
            return new Options(checkpointBytes, checkpointMillis, maxBlocksPerCopy, clock, window, on, adaptive);
        }

        /** At most {@code n} copies in flight (exactly n when the window is not adaptive). */
        public Options withWindow(int n) {
            return new Options(checkpointBytes, checkpointMillis, maxBlocksPerCopy, clock, n, pipelined, adaptive);
        }

        /**
         * Adaptive window (default on): the copies in flight follow the copies' latency, up to
         * {@code window} ({@link WindowControl}); off: always {@code window} copies in flight.
         */
        public Options withAdaptiveWindow(boolean on) {
            return new Options(checkpointBytes, checkpointMillis, maxBlocksPerCopy, clock, window, pipelined, on);
        }
    }

    private static final long RATE_WINDOW_NANOS = TimeUnit.MILLISECONDS.toNanos(500);

    private final BlockIO primary;
    private final BlockIO secondary;
    private final RangeLock lock;
    private final List<Extent> extents;
    private final RateLimiter limiter;
    private final ResyncListener listener;
    private final Options options;
    private final long blocksTotal;
    private final int blockSize;
    private final Copier copier;
    private volatile WindowControl control;

    // progress, guarded by this
    private Progress.State state = Progress.State.IDLE;
    private long blocksDone;
    private long bytesCopied;
    private long checkpoints;
    private double rate;
    private Throwable failure;
    private boolean paused;
    private boolean cancelled;
    private boolean started;
    private Thread thread;

    // where the time goes (System.nanoTime; read and write are summed over the window's threads)
    private final java.util.concurrent.atomic.AtomicLong readNanos = new java.util.concurrent.atomic.AtomicLong(),
            writeNanos = new java.util.concurrent.atomic.AtomicLong(), drainNanos = new java.util.concurrent.atomic.AtomicLong(),
            flushNanos = new java.util.concurrent.atomic.AtomicLong(), persistNanos = new java.util.concurrent.atomic.AtomicLong();
    private volatile long runStartNanos, runEndNanos;
    private final java.util.concurrent.atomic.AtomicLong waitNanos = new java.util.concurrent.atomic.AtomicLong(),
            backgroundCheckpoints = new java.util.concurrent.atomic.AtomicLong();
    private Thread background; // a pipelined checkpoint's flush and persist; started and joined by the copy loop only
    private volatile Throwable backgroundFailure;

    /**
     * Where a run's time went, in ns: {@code wall} from the start of {@link #run} to its end (or
     * to now while running); {@code read} and {@code write} summed over the copies (they overlap
     * in the window, so they can exceed wall); {@code drain} the copy loop waiting for the window
     * to empty (stalling checkpoints, pause, the end); {@code flush} the secondary's checkpoint
     * flushes and {@code persist} the tracking log's, summed (with pipelined checkpoints they run
     * beside the copies); {@code waited} the copy loop waiting for a pipelined checkpoint still
     * running at the next interval; {@code backgroundCheckpoints} how many ran beside the copies.
     */
    public record Timing(long wall, long read, long write, long drain, long flush, long persist, int window,
                         long waited, long backgroundCheckpoints, boolean pipelined, WindowControl.Stats windowStats) {
    }

    public Timing timing() {
        long start = runStartNanos, end = runEndNanos;
        long wall = start == 0 ? 0 : (end != 0 ? end : System.nanoTime()) - start;
        return new Timing(wall, readNanos.get(), writeNanos.get(), drainNanos.get(), flushNanos.get(), persistNanos.get(),
                options.window(), waitNanos.get(), backgroundCheckpoints.get(), options.pipelined(), control.stats());
    }

    // rate estimate, guarded by this (copies complete on the window's threads)
    private long windowStart;
    private long windowBytes;

    public Resync(BlockIO primary, BlockIO secondary, RangeLock lock, List<Extent> extents,
                  RateLimiter limiter, ResyncListener listener) {
        this(primary, secondary, lock, extents, limiter, listener, Options.DEFAULT);
    }

    public Resync(BlockIO primary, BlockIO secondary, RangeLock lock, List<Extent> extents,
                  RateLimiter limiter, ResyncListener listener, Options options) {
        this(primary, secondary, lock, extents, limiter, listener, options, Copier.of(primary, secondary));
    }

    /** With the copy path given (tests); the others pick it with {@link Copier#of}. */
    public Resync(BlockIO primary, BlockIO secondary, RangeLock lock, List<Extent> extents,
                  RateLimiter limiter, ResyncListener listener, Options options, Copier copier) {
        if (primary.blockSize() != secondary.blockSize() || primary.blockCount() != secondary.blockCount()) {
            throw new IllegalArgumentException("legs differ: primary has " + primary.blockCount() + " blocks of "
                    + primary.blockSize() + " bytes, secondary " + secondary.blockCount() + " blocks of "
                    + secondary.blockSize() + " bytes; resync needs two legs of the same size and block size");
        }
        Extents.checkSortedDisjoint(extents);
        for (Extent e : extents) {
            BlockIO.checkRange(primary, e.start(), e.count());
        }
        this.primary = primary;
        this.secondary = secondary;
        this.lock = lock;
        this.extents = Extents.unmodifiable(extents);
        this.limiter = limiter == null ? RateLimiter.unlimited() : limiter;
        this.listener = listener == null ? ResyncListener.NONE : listener;
        this.options = options;
        this.blocksTotal = Extents.totalBlocks(extents);
        this.blockSize = primary.blockSize();
        this.copier = copier;
        this.control = options.adaptive() ? WindowControl.adaptive(options.window()) : WindowControl.fixed(options.window());
    }

    /**
     * Uses {@code c} for the window instead of a new one from the options (before the run): a
     * resync of several passes keeps what the window learned of the link from one pass to the next.
     */
    public Resync withWindowControl(WindowControl c) {
        synchronized (this) {
            if (started) throw new IllegalStateException("the window control is set before the resync starts");
        }
        this.control = java.util.Objects.requireNonNull(c);
        return this;
    }

    public WindowControl windowControl() {
        return control;
    }

    /** The copy path: native in-kernel copy for two local file legs, else Java ({@link Copier#of}). */
    public Copier copier() {
        return copier;
    }

    /** Resync of a dirty bitmap (Roaring64Bitmap or Roaring64NavigableMap), coalesced to 1 MiB-ish copies. */
    public static Resync of(BlockIO primary, BlockIO secondary, RangeLock lock, ImmutableLongBitmapDataProvider dirty,
                            RateLimiter limiter, ResyncListener listener, Options options) {
        return new Resync(primary, secondary, lock, Extents.of(dirty, options.maxBlocksPerCopy()), limiter, listener, options);
    }

    public List<Extent> extents() {
        return extents;
    }

    public RateLimiter rateLimiter() {
        return limiter;
    }

    /** A consistent snapshot; safe from any thread. */
    public synchronized Progress progress() {
        long eta = -1;
        if (state == Progress.State.DONE) {
            eta = 0;
        } else if (rate > 0) {
            eta = (long) Math.ceil((blocksTotal - blocksDone) * (double) blockSize / rate);
        }
        return new Progress(state, blocksDone, blocksTotal, bytesCopied, checkpoints, rate, eta, failure);
    }

    /** Runs on a new daemon thread; returns at once. */
    public Thread start() {
        Thread t = new Thread(this::run, "resync");
        t.setDaemon(true);
        synchronized (this) {
            claim();
            thread = t;
        }
        t.start();
        return t;
    }

    private void claim() {
        if (started) {
            throw new IllegalStateException("this resync has already been started; create a new Resync to resume");
        }
        started = true;
    }

    /** Stops after the copies in flight; what was copied is flushed and checkpointed. */
    public synchronized void cancel() {
        cancelled = true;
        notifyAll();
    }

    public synchronized void pause() {
        paused = true;
        notifyAll();
    }

    public synchronized void resume() {
        paused = false;
        notifyAll();
    }

    /** Waits until DONE, FAILED or CANCELLED; returns the final progress. */
    public Progress awaitDone() throws InterruptedException {
        synchronized (this) {
            while (!state.isTerminal()) {
                wait();
            }
        }
        return progress();
    }

    /** Waits at most {@code timeout}; returns the progress then, terminal or not. */
    public Progress awaitDone(long timeout, TimeUnit unit) throws InterruptedException {
        long deadline = System.nanoTime() + unit.toNanos(timeout);
        synchronized (this) {
            long left;
            while (!state.isTerminal() && (left = deadline - System.nanoTime()) > 0) {
                TimeUnit.NANOSECONDS.timedWait(this, left);
            }
        }
        return progress();
    }

    private synchronized boolean isCancelled() {
        return cancelled;
    }

    private void setState(Progress.State s, Throwable cause) {
        synchronized (this) {
            if (state == s) {
                return;
            }
            state = s;
            if (cause != null) {
                failure = cause;
            }
            notifyAll();
        }
        listener.onStateChange(s);
    }

    /** Blocks while paused; false if cancelled. */
    private boolean awaitNotPaused() throws InterruptedException {
        synchronized (this) {
            if (!paused || cancelled) {
                return !cancelled;
            }
        }
        setState(Progress.State.PAUSED, null);
        synchronized (this) {
            while (paused && !cancelled) {
                wait();
            }
            if (cancelled) {
                return false;
            }
        }
        setState(Progress.State.RUNNING, null);
        return true;
    }

    /**
     * Runs the copy, driven from the calling thread with up to {@code window} copies in flight on
     * helper threads; returns the final progress (never throws for I/O errors).
     */
    public Progress run() {
        synchronized (this) {
            if (thread != Thread.currentThread()) {
                claim();
            }
        }
        runStartNanos = System.nanoTime();
        try {
            return runTimed();
        } finally {
            runEndNanos = System.nanoTime();
        }
    }

    private Progress runTimed() {
        setState(Progress.State.RUNNING, null);
        RateLimiter.Clock clock = options.clock();
        long checkpointNanos = TimeUnit.MILLISECONDS.toNanos(options.checkpointMillis());
        long maxBlocks = options.maxBlocksPerCopy();
        long largest = 0;
        for (Extent e : extents) {
            largest = Math.max(largest, Math.min(e.count(), maxBlocks));
        }
        Window w = new Window((int) Math.max(blockSize, largest * blockSize));
        long sinceCheckpoint = 0; // bytes submitted since the last checkpoint
        long lastCheckpoint = clock.nanoTime();
        synchronized (this) {
            windowStart = lastCheckpoint;
        }
        boolean stopped = false;
        try {
            outer:
            for (Extent e : extents) {
                for (long s = e.start(); s < e.end(); ) {
                    // the window's cut: shorter copies on a slow link (WindowControl#copyBytes)
                    long step = Math.max(1, Math.min(maxBlocks, control.copyBytes(maxBlocks * blockSize) / blockSize));
                    Extent c = new Extent(s, Math.min(step, e.end() - s));
                    s += c.count();
                    int bytes = (int) (c.count() * blockSize);
                    // rate-limit before taking the lock: never sleep while application writes wait
                    if (!awaitNotPaused(w) || !limiter.acquire(bytes, this::isCancelled)) {
                        stopped = true;
                        break outer;
                    }
                    w.submit(c);
                    sinceCheckpoint += bytes;
                    long now = clock.nanoTime();
                    if (sinceCheckpoint >= options.checkpointBytes() || now - lastCheckpoint >= checkpointNanos) {
                        long t0 = System.nanoTime();
                        if (options.pipelined()) {
                            awaitBackground(); // the previous one (its failure stops the resync)
                            waitNanos.addAndGet(System.nanoTime() - t0);
                            startBackground(w);
                        } else {
                            w.drain(); // every copy submitted so far completed (or failed: throws)
                            drainNanos.addAndGet(System.nanoTime() - t0);
                            checkpoint();
                        }
                        sinceCheckpoint = 0;
                        lastCheckpoint = clock.nanoTime();
                    }
                }
            }
            long t0 = System.nanoTime();
            w.drain();
            drainNanos.addAndGet(System.nanoTime() - t0);
            awaitBackground();
            if (reportedSinceBarrier.get() > 0 || !stopped) {
                checkpoint();
            }
            setState(stopped ? Progress.State.CANCELLED : Progress.State.DONE, null);
        } catch (InterruptedException ie) {
            // interrupted while waiting for the window or the rate limiter: treat as cancel, but
            // clear the flag while flushing (an interrupted FileChannel closes itself)
            Thread.interrupted();
            try {
                w.drain();
                awaitBackground();
                if (reportedSinceBarrier.get() > 0) {
                    checkpoint();
                }
                setState(Progress.State.CANCELLED, null);
            } catch (IOException | RuntimeException | Error e) {
                setState(Progress.State.FAILED, e);
            } finally {
                Thread.currentThread().interrupt();
            }
        } catch (IOException | RuntimeException | Error e) {
            // Best effort: let the copies in flight end (each either completed and was reported
            // to onCopied, or failed and stays dirty); if the secondary still flushes, persist
            // what was copied so a resume redoes as little as possible. If the flush fails,
            // nothing is checkpointed and the engine resumes from the last checkpoint (a
            // superset of what remains).
            w.awaitIdle();
            try {
                awaitBackground();
            } catch (IOException | RuntimeException | Error e2) {
                if (e2 != e) e.addSuppressed(e2);
            }
            if (reportedSinceBarrier.get() > 0) {
                try {
                    checkpoint();
                } catch (IOException | RuntimeException e2) {
                    e.addSuppressed(e2);
                }
            }
            setState(Progress.State.FAILED, e);
        } finally {
            try {
                awaitBackground(); // no checkpoint of this run outlives it
            } catch (IOException | RuntimeException | Error ignored) {
                // the run's own outcome is already decided; a failing secondary shows there too
            }
            w.close();
        }
        return progress();
    }

    /** Blocks while paused, after letting the copies in flight end; false if cancelled. */
    private boolean awaitNotPaused(Window w) throws InterruptedException, IOException {
        synchronized (this) {
            if (!paused || cancelled) {
                return !cancelled;
            }
        }
        w.drain();
        return awaitNotPaused();
    }

    /** One copy: under the range lock, primary to secondary (read then write, or in the kernel), report it. */
    private void copy(Extent c, ByteBuffer buf) throws IOException, InterruptedException {
        int bytes = (int) (c.count() * blockSize);
        try (RangeLock.Held h = lock.lock(c.start(), c.count())) {
            long e0 = flushEpoch.get();
            long t0 = System.nanoTime(); // after the lock: the window follows the secondary, not application writes
            copier.copy(primary, secondary, c, buf, readNanos, writeNanos);
            long t1 = System.nanoTime();
            // a copy beside a checkpoint's flush waited for the secondary's disk, not behind the
            // other copies: its latency says nothing about the window (the controller halved
            // the window at every flush, and on a fast link got a third of the throughput)
            boolean besideFlush = (e0 & 1) != 0 || flushEpoch.get() != e0;
            control.completed(bytes, t1 - t0, t1, !besideFlush);
            listener.onCopied(c);
            reportedSinceBarrier.incrementAndGet(); // after the report: never 0 while a report is unsealed
        }
        copied(c, bytes, options.clock().nanoTime());
    }

    /**
     * At most {@code n} copies in flight, each on a helper thread with its own buffer. Copies of
     * distinct extents complete in any order; each reports itself to {@code onCopied} when its
     * secondary write returned, so the log holds exactly the copies that have not completed.
     * The first failure stops the resync: {@link #submit} and {@link #drain} throw it.
     */
    private final class Window implements AutoCloseable {
        private final ExecutorService pool;
        private final ArrayDeque<ByteBuffer> free = new ArrayDeque<>();
        private final int bufferBytes;
        private int inFlight;
        private Throwable failure;

        /**
         * Threads and buffers are made as the window first needs them and kept for the run: the
         * limit ({@link WindowControl#limit()}, at most {@link WindowControl#MAX_WINDOW}) moves
         * during the run, also by an operator ({@link WindowControl#reconfigure}).
         */
        Window(int bufferBytes) {
            this.bufferBytes = bufferBytes;
            AtomicInteger ids = new AtomicInteger();
            // a cached pool, not one bounded at MAX_WINDOW: a copy counts itself out of the window
            // just before its thread is idle again, so a submit at a full window of 64 could meet
            // 64 threads none of which is waiting yet, and a bounded pool would refuse it
            pool = Executors.newCachedThreadPool(r -> {
                Thread t = new Thread(r, "resync-copy-" + ids.incrementAndGet());
                t.setDaemon(true);
                return t;
            });
        }

        /** Waits for a free slot, then starts the copy. */
        void submit(Extent c) throws InterruptedException, IOException {
            ByteBuffer buf;
            synchronized (this) {
                // the limit can fall below inFlight (the window shrank): wait until enough ended;
                // a completion notifies, an operator's raise (reconfigure) is seen within 100 ms
                while (inFlight >= control.limit() && failure == null) {
                    wait(100);
                }
                rethrow();
                inFlight++;
                buf = free.isEmpty() ? ByteBuffer.allocateDirect(bufferBytes) : free.pop();
                control.started(inFlight);
            }
            pool.execute(() -> {
                Throwable err = null;
                try {
                    copy(c, buf);
                } catch (Throwable t) {
                    err = t;
                }
                synchronized (this) {
                    if (err != null && failure == null) {
                        failure = err;
                    }
                    inFlight--;
                    free.push(buf);
                    notifyAll();
                }
            });
        }

        /** Records a failure from outside the copies (a pipelined checkpoint): the next submit or drain throws it. */
        synchronized void fail(Throwable t) {
            if (failure == null) failure = t;
            notifyAll();
        }

        /** Waits until no copy is in flight (uninterruptibly), then throws the first failure, if any. */
        void drain() throws IOException {
            awaitIdle();
            synchronized (this) {
                rethrow();
            }
        }

        synchronized void awaitIdle() {
            boolean interrupted = false;
            while (inFlight > 0) {
                try {
                    wait();
                } catch (InterruptedException e) {
                    interrupted = true;
                }
            }
            if (interrupted) {
                Thread.currentThread().interrupt();
            }
        }

        private void rethrow() throws IOException {
            Throwable f = failure;
            if (f == null) {
                return;
            }
            if (f instanceof IOException io) {
                throw io;
            }
            if (f instanceof RuntimeException re) {
                throw re;
            }
            if (f instanceof Error er) {
                throw er;
            }
            // InterruptedException from the range lock: the helper was interrupted; not expected
            throw new IOException("resync copy interrupted", f);
        }

        @Override
        public void close() {
            pool.shutdown();
        }
    }

    /**
     * A pipelined checkpoint: the barrier now, on the copy loop's thread (so it covers exactly
     * the copies reported so far, all of whose writes returned before the flush below is issued),
     * then the flush and the persist on a helper thread while the loop copies on.
     */
    private void startBackground(Window w) {
        barrier();
        Thread t = new Thread(() -> {
            try {
                long t0 = System.nanoTime();
                flushEpoch.incrementAndGet(); // odd: a flush is running (copies beside it are no window sample)
                try {
                    secondary.flush();
                } finally {
                    flushEpoch.incrementAndGet();
                }
                long t1 = System.nanoTime();
                flushNanos.addAndGet(t1 - t0);
                listener.checkpoint();
                persistNanos.addAndGet(System.nanoTime() - t1);
                backgroundCheckpoints.incrementAndGet();
                synchronized (this) {
                    checkpoints++;
                }
            } catch (IOException | RuntimeException | Error e) {
                backgroundFailure = e;
                w.fail(e); // the copy loop stops at its next submit
            }
        }, "resync-checkpoint");
        t.setDaemon(true);
        background = t;
        t.start();
    }

    /** Waits for a pipelined checkpoint (uninterruptibly: a flush in progress is let finish), and throws its failure. */
    private void awaitBackground() throws IOException {
        Thread t = background;
        if (t != null) {
            boolean interrupted = false;
            while (t.isAlive()) {
                try {
                    t.join();
                } catch (InterruptedException e) {
                    interrupted = true;
                }
            }
            if (interrupted) Thread.currentThread().interrupt();
            background = null;
        }
        Throwable f = backgroundFailure;
        if (f != null) {
            backgroundFailure = null;
            if (f instanceof IOException io) throw io;
            if (f instanceof RuntimeException re) throw re;
            throw (Error) f;
        }
    }

    /**
     * Makes the copies reported so far durable on the secondary, THEN lets the engine persist
     * the tracking log.
     *
     * <p>The order is the point. Once the log is persisted with these blocks clean, a restart will
     * never copy them again. Our writes to the secondary are only in its cache (page cache, a
     * remote's buffers) until a flush completes. If the log were persisted first and the power
     * then failed, the secondary would come back without the data while the persisted log says it
     * is in sync: the legs would stay different forever with nothing left to repair them.
     * Flushing first means every clean bit on disk stands for data that is durable on the
     * secondary; the worst a crash does is make us copy again the blocks since the last
     * checkpoint. The barrier before the flush tells the listener which copies the flush covers
     * (those reported before it); with pipelined checkpoints later copies complete meanwhile.
     */
    private void checkpoint() throws IOException {
        barrier();
        long t0 = System.nanoTime();
        flushEpoch.incrementAndGet();
        try {
            secondary.flush();
        } finally {
            flushEpoch.incrementAndGet();
        }
        long t1 = System.nanoTime();
        flushNanos.addAndGet(t1 - t0);
        listener.checkpoint();
        persistNanos.addAndGet(System.nanoTime() - t1);
        synchronized (this) {
            checkpoints++;
        }
    }

    /** Incremented as a checkpoint's flush of the secondary starts and as it ends (odd while one runs). */
    private final java.util.concurrent.atomic.AtomicLong flushEpoch = new java.util.concurrent.atomic.AtomicLong();

    /** Copies reported to the listener since the last barrier (or more, never fewer: see copy()). */
    private final java.util.concurrent.atomic.AtomicLong reportedSinceBarrier = new java.util.concurrent.atomic.AtomicLong();

    private void barrier() {
        reportedSinceBarrier.set(0); // before the listener seals: a report it misses counts again
        listener.barrier();
    }

    private synchronized void copied(Extent c, int bytes, long now) {
        windowBytes += bytes;
        long dt = now - windowStart;
        blocksDone += c.count();
        bytesCopied += bytes;
        if (dt >= RATE_WINDOW_NANOS) {
            double r = windowBytes * 1e9 / dt;
            rate = rate == 0 ? r : 0.5 * rate + 0.5 * r;
            windowStart = now;
            windowBytes = 0;
        }
    }
}
