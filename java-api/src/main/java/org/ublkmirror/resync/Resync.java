package org.ublkmirror.resync;

import org.roaringbitmap.longlong.ImmutableLongBitmapDataProvider;
import org.ublkmirror.fork.RangeLock;
import org.ublkmirror.leg.BlockIO;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.List;
import java.util.concurrent.TimeUnit;

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
 * the current copy, flushes, checkpoints) | FAILED (an I/O error; what was checkpointed stays
 * done). A Resync runs once; resume is a new Resync over the remaining dirty set.
 *
 * <h2>Flush before checkpoint</h2>
 * See {@link #checkpoint()}.
 */
public final class Resync {

    /** Tuning knobs. */
    public record Options(long checkpointBytes, long checkpointMillis, long maxBlocksPerCopy,
                          RateLimiter.Clock clock) {
        public static final Options DEFAULT = new Options(64L << 20, 5_000, Extents.DEFAULT_MAX_BLOCKS,
                RateLimiter.Clock.SYSTEM);

        public Options {
            if (checkpointBytes <= 0 || checkpointMillis <= 0 || maxBlocksPerCopy <= 0) {
                throw new IllegalArgumentException("resync options must be positive: checkpointBytes="
                        + checkpointBytes + " checkpointMillis=" + checkpointMillis + " maxBlocksPerCopy=" + maxBlocksPerCopy);
            }
            if (clock == null) {
                clock = RateLimiter.Clock.SYSTEM;
            }
        }

        public Options withCheckpointBytes(long b) {
            return new Options(b, checkpointMillis, maxBlocksPerCopy, clock);
        }

        public Options withCheckpointMillis(long ms) {
            return new Options(checkpointBytes, ms, maxBlocksPerCopy, clock);
        }

        public Options withMaxBlocksPerCopy(long n) {
            return new Options(checkpointBytes, checkpointMillis, n, clock);
        }

        public Options withClock(RateLimiter.Clock c) {
            return new Options(checkpointBytes, checkpointMillis, maxBlocksPerCopy, c);
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

    // rate estimate, runner thread only
    private long windowStart;
    private long windowBytes;

    public Resync(BlockIO primary, BlockIO secondary, RangeLock lock, List<Extent> extents,
                  RateLimiter limiter, ResyncListener listener) {
        this(primary, secondary, lock, extents, limiter, listener, Options.DEFAULT);
    }

    public Resync(BlockIO primary, BlockIO secondary, RangeLock lock, List<Extent> extents,
                  RateLimiter limiter, ResyncListener listener, Options options) {
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

    /** Stops after the current copy; what was copied is flushed and checkpointed. */
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

    /** Runs the copy in the calling thread; returns the final progress (never throws for I/O errors). */
    public Progress run() {
        synchronized (this) {
            if (thread != Thread.currentThread()) {
                claim();
            }
        }
        setState(Progress.State.RUNNING, null);
        RateLimiter.Clock clock = options.clock();
        long checkpointNanos = TimeUnit.MILLISECONDS.toNanos(options.checkpointMillis());
        long maxBlocks = options.maxBlocksPerCopy();
        long largest = 0;
        for (Extent e : extents) {
            largest = Math.max(largest, Math.min(e.count(), maxBlocks));
        }
        ByteBuffer buf = ByteBuffer.allocateDirect((int) Math.max(blockSize, largest * blockSize));
        long sinceCheckpoint = 0;
        long lastCheckpoint = clock.nanoTime();
        windowStart = lastCheckpoint;
        boolean stopped = false;
        try {
            outer:
            for (Extent e : extents) {
                for (long s = e.start(); s < e.end(); s += maxBlocks) {
                    Extent c = new Extent(s, Math.min(maxBlocks, e.end() - s));
                    int bytes = (int) (c.count() * blockSize);
                    // rate-limit before taking the lock: never sleep while application writes wait
                    if (!awaitNotPaused() || !limiter.acquire(bytes, this::isCancelled)) {
                        stopped = true;
                        break outer;
                    }
                    try (RangeLock.Held h = lock.lock(c.start(), c.count())) {
                        buf.clear().limit(bytes);
                        primary.read(c.start(), buf);
                        buf.flip();
                        secondary.write(c.start(), buf, false);
                        listener.onCopied(c);
                    }
                    sinceCheckpoint += bytes;
                    copied(c, bytes, clock.nanoTime());
                    long now = clock.nanoTime();
                    if (sinceCheckpoint >= options.checkpointBytes() || now - lastCheckpoint >= checkpointNanos) {
                        checkpoint();
                        sinceCheckpoint = 0;
                        lastCheckpoint = clock.nanoTime();
                    }
                }
            }
            if (sinceCheckpoint > 0 || !stopped) {
                checkpoint();
            }
            setState(stopped ? Progress.State.CANCELLED : Progress.State.DONE, null);
        } catch (InterruptedException ie) {
            // interrupted while waiting for the lock or the rate limiter: treat as cancel, but
            // clear the flag while flushing (an interrupted FileChannel closes itself)
            Thread.interrupted();
            try {
                if (sinceCheckpoint > 0) {
                    checkpoint();
                }
                setState(Progress.State.CANCELLED, null);
            } catch (IOException | RuntimeException e) {
                setState(Progress.State.FAILED, e);
            } finally {
                Thread.currentThread().interrupt();
            }
        } catch (IOException | RuntimeException | Error e) {
            // Best effort: if the secondary still flushes, persist what was copied so a resume
            // redoes as little as possible. If the flush fails, nothing is checkpointed and the
            // engine resumes from the last checkpoint (a superset of what remains).
            if (sinceCheckpoint > 0) {
                try {
                    checkpoint();
                } catch (IOException | RuntimeException e2) {
                    e.addSuppressed(e2);
                }
            }
            setState(Progress.State.FAILED, e);
        }
        return progress();
    }

    /**
     * Makes the copies so far durable on the secondary, THEN lets the engine persist the
     * tracking log.
     *
     * <p>The order is the point. After {@code onCopied} the engine's in-memory log no longer has
     * these blocks; once the log is persisted, a restart will never copy them again. Our writes
     * to the secondary are only in its cache (page cache, a remote's buffers) until a flush
     * completes. If the log were persisted first and the power then failed, the secondary would
     * come back without the data while the persisted log says it is in sync: the legs would stay
     * different forever with nothing left to repair them. Flushing first means every cleared bit
     * on disk stands for data that is durable on the secondary; the worst a crash does is make
     * us copy again the blocks since the last checkpoint.
     */
    private void checkpoint() throws IOException {
        secondary.flush();
        listener.checkpoint();
        synchronized (this) {
            checkpoints++;
        }
    }

    private void copied(Extent c, int bytes, long now) {
        windowBytes += bytes;
        long dt = now - windowStart;
        synchronized (this) {
            blocksDone += c.count();
            bytesCopied += bytes;
            if (dt >= RATE_WINDOW_NANOS) {
                double r = windowBytes * 1e9 / dt;
                rate = rate == 0 ? r : 0.5 * rate + 0.5 * r;
            }
        }
        if (dt >= RATE_WINDOW_NANOS) {
            windowStart = now;
            windowBytes = 0;
        }
    }
}
