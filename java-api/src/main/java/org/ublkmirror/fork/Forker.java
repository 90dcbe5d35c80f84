package org.ublkmirror.fork;

import org.ublkmirror.leg.BlockIO;
import org.ublkmirror.leg.Leg;
import org.ublkmirror.leg.Superblock;
import org.ublkmirror.leg.WriteSource;
import org.ublkmirror.tags.TagJournal;
import org.ublkmirror.tags.TagRecord;
import org.ublkmirror.tags.TagTable;
import org.ublkmirror.tags.TagWindow;

import java.io.Closeable;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.UUID;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

/**
 * The host's forker: turns each write into two tagged write transactions, one per leg.
 *
 * <p>The write path, per request:
 * <ol>
 * <li>lock the block range ({@link RangeLock}): overlapping writes reach both legs in arrival order;</li>
 * <li>make sure the range's regions are in the durable intent record ({@link IntentLog}; power loss);</li>
 * <li>issue a tag and append (tag, object, range) to both legs' tag journals, group-committed
 *     with every other write arriving meanwhile ({@link Committer}): no extra synchronous I/O;</li>
 * <li>write the data to both legs concurrently; if the secondary is offline, or fails now, send a
 *     tracking command to the tracker instead;</li>
 * <li>acknowledge when the primary has the data and the secondary has it or the tracker has
 *     answered TRACKED. The tag retires then (both legs), or when the tracking log holding the
 *     blocks is persisted (tracked writes): until it retires, it is live in the tag tables.</li>
 * </ol>
 * A FLUSH flushes both legs (and persists the tracking log while degraded); FUA is passed to
 * both legs. Discard and write-zeroes take the same path as writes.
 */
public final class Forker implements Closeable {

    /** The tracker, as the forker sees it. */
    public interface Tracking {
        /** A tracking command; true when the tracker answered TRACKED. */
        boolean track(long tag, int objectId, long startBlock, long blockCount);

        /** Persists the tracking log (local and shipped). */
        void persist() throws IOException;
    }

    /** Told when the mirror goes degraded. */
    public interface Listener {
        void onDegraded(String reason);
    }

    private final Leg primary;
    private volatile Leg secondary;
    private volatile boolean secondaryOnline;
    private final int hostId;
    private final TagWindow window;
    private final TagJournal pJournal;
    private volatile TagJournal sJournal;
    private final IntentLog intents;
    private final RangeLock locks = new RangeLock();
    private final Committer committer = new Committer();
    private final ExecutorService secondaryPool;
    private final ScheduledExecutorService ticker;
    private final Tracking tracking;
    private final Listener listener;
    private final Set<Long> pendingTracked = ConcurrentHashMap.newKeySet();
    private final Object persistLock = new Object();
    private final Object objectLock = new Object();

    final AtomicLong writes = new AtomicLong(), trackedWrites = new AtomicLong(), journalBlocks = new AtomicLong(),
            journalRecords = new AtomicLong(), flushes = new AtomicLong();
    private volatile long lastWatermarkWritten;
    private volatile String degradedReason;
    /** Why the secondary's journal last refused an append (the degraded reason names it). */
    private volatile String sJournalError;
    private volatile boolean tagging = true;
    private final java.util.concurrent.atomic.AtomicInteger secondaryInflight = new java.util.concurrent.atomic.AtomicInteger();

    /**
     * @param secondary null when the secondary cannot be opened (the mirror starts degraded)
     * @param pTable    the primary's scanned tag table (recovery is done: its live entries are resolved)
     * @param sTable    the secondary's, or null
     */
    public Forker(Leg primary, Leg secondary, boolean secondaryOnline, TagTable pTable, TagTable sTable, int hostId,
                  long lastSeq, Tracking tracking, Listener listener, int maxActiveRegions, long tickMillis) {
        this.primary = primary;
        this.secondary = secondary;
        this.secondaryOnline = secondaryOnline && secondary != null;
        this.hostId = hostId;
        this.window = new TagWindow(hostId, lastSeq);
        this.pJournal = new TagJournal(primary, pTable);
        this.sJournal = secondary != null && sTable != null ? new TagJournal(secondary, sTable) : null;
        this.tracking = tracking;
        this.listener = listener == null ? r -> { } : listener;
        this.intents = new IntentLog(primary, secondary, maxActiveRegions, this::flushForIntent, lastIntentSeq(primary, secondary));
        this.secondaryPool = Executors.newCachedThreadPool(daemon("secondary-io"));
        this.ticker = Executors.newSingleThreadScheduledExecutor(daemon("forker-tick"));
        this.lastWatermarkWritten = window.watermark();
        // retire the watermark when idle, so a crash after a quiet period repairs nothing
        if (tickMillis > 0) {
            ticker.scheduleWithFixedDelay(this::tick, tickMillis, tickMillis, TimeUnit.MILLISECONDS);
        }
    }

    /** New intent records must outrank every record already on either leg (the newer slot wins). */
    private static long lastIntentSeq(Leg p, Leg s) {
        long seq = 0;
        for (Leg l : new Leg[] {p, s}) {
            if (l == null) continue;
            try {
                IntentRecord r = IntentRecord.read(l);
                if (r != null) seq = Math.max(seq, r.seq);
            } catch (IOException e) {
                // unreadable: a failing secondary; its record is not used while it is out of sync
            }
        }
        return seq;
    }

    private static java.util.concurrent.ThreadFactory daemon(String name) {
        AtomicLong n = new AtomicLong();
        return r -> {
            Thread t = new Thread(r, name + "-" + n.incrementAndGet());
            t.setDaemon(true);
            return t;
        };
    }

    private void tick() {
        try {
            if (!pendingTracked.isEmpty()) {
                persistTracking();
            }
            if (window.watermark() != lastWatermarkWritten) {
                committer.commit(-1, 0, 0, secondaryOnline);
            }
        } catch (IOException | RuntimeException e) {
            // the next write or tick retries; a failing primary surfaces on the data path
        }
    }

    /**
     * Turns the tag journal off: the benchmark baseline ("the same forking without tags"). A
     * mirror run this way cannot repair precisely after a crash; nothing but bench/ calls it.
     */
    public void disableTaggingForBenchmark() {
        tagging = false;
    }

    /**
     * Writes a journal block carrying the current watermark now (what the idle tick does), on the
     * primary and, while it is online, the secondary. A secondary whose journal cannot take it is
     * dropped (degraded, tracking starts), as for a write's journal entry: a secondary left
     * "mirrored" with a stale journal would have its old entries repaired again after a crash.
     */
    public void writeWatermark() throws IOException {
        journalWatermark("");
    }

    private void journalWatermark(String when) throws IOException {
        if (committer.commit(-1, 0, 0, secondaryOnline) < 0) {
            String why = sJournalError;
            degrade("secondary tag journal write failed" + when + (why != null ? ": " + why : ""));
        }
    }

    public RangeLock rangeLock() {
        return locks;
    }

    public boolean secondaryOnline() {
        return secondaryOnline;
    }

    public String degradedReason() {
        return degradedReason;
    }

    public TagWindow window() {
        return window;
    }

    public int hostId() {
        return hostId;
    }

    public int activeRegions() {
        return intents.activeRegions();
    }

    public long intentRecordWrites() {
        return intents.recordWrites();
    }

    /** Times the intent record had no clean region to give up and both legs were flushed for it. */
    public long intentForcedFlushes() {
        return intents.forcedFlushes();
    }

    public long writes() {
        return writes.get();
    }

    public long trackedWrites() {
        return trackedWrites.get();
    }

    public long journalBlocks() {
        return journalBlocks.get();
    }

    public long journalRecords() {
        return journalRecords.get();
    }

    public int pendingTrackedCount() {
        return pendingTracked.size();
    }

    // ---------------------------------------------------------------- data path

    /** Reads from the primary (the secondary may be behind). */
    public void read(int objectId, long block, ByteBuffer dst) throws IOException {
        long n = BlockIO.blocksOf(primary.data(), dst);
        long abs = resolve(objectId, block, n, false);
        primary.data().read(abs, dst);
    }

    public void write(int objectId, long block, ByteBuffer src, boolean fua) throws IOException {
        long n = BlockIO.blocksOf(primary.data(), src);
        fork(objectId, block, n, src, null, fua);
    }

    /**
     * A write whose bytes the legs may take straight from the source ({@link WriteSource#writeTo}:
     * a ublk request's registered buffer), with no copy through Java; otherwise as
     * {@link #write(int, long, ByteBuffer, boolean)}. Tags, locks, intents and tracking are the same.
     */
    public void write(int objectId, long block, WriteSource src, boolean fua) throws IOException {
        fork(objectId, block, BlockIO.blocksOf(primary.data(), src.length()), null, src, fua);
    }

    /**
     * Whether a write (without FUA) of {@code n} blocks at {@code block} would now be served
     * without waiting for a disk or a network ({@link org.ublkmirror.frontend.BlockTarget#writeWouldNotWait}):
     * both legs local (their writes go into the page cache), the tag journals mapped (an append is
     * a memory copy), and the blocks' regions already in the intent record (no record write). A
     * guess: a region may leave the record, or a resync copy hold the range, before the write runs.
     */
    public boolean writeWouldNotWait(int objectId, long block, long n) {
        if (primary.store().slow() || !committer.appendsInMemory()) return false;
        Leg s = secondary;
        if (secondaryOnline && s != null && s.store().slow()) return false;
        long abs;
        try {
            abs = resolve(objectId, block, n, false);
        } catch (IOException | IllegalArgumentException e) {
            return false; // the write itself will say what is wrong
        }
        return intents.holds(abs, n);
    }

    public void discard(int objectId, long block, long count) throws IOException {
        fork(objectId, block, count, null, null, false);
    }

    /**
     * One leg's part of a forked request: writes {@code ws} (each leg asks it afresh), or
     * {@code src} (its position and limit as they were on return, so the next leg sees the same
     * bytes), or with both null discards
     * {@code count} blocks. Not for two threads at once on one buffer: see {@link #fork}.
     */
    private static void apply(BlockIO leg, long abs, ByteBuffer src, WriteSource ws, boolean fua, long count) throws IOException {
        if (ws != null) {
            leg.write(abs, ws, fua);
            return;
        }
        if (src == null) {
            leg.discard(abs, count);
            return;
        }
        int pos = src.position(), lim = src.limit();
        try {
            leg.write(abs, src, fua);
        } finally {
            src.limit(lim).position(pos);
        }
    }

    private long resolve(int objectId, long block, long count, boolean mayExtend) throws IOException {
        Superblock.StorageObject o = primary.object(objectId);
        if (o == null) {
            throw new IllegalArgumentException("storage object " + objectId + " does not exist on this mirror");
        }
        if (block < 0 || count < 0 || block > o.capacityBlocks() - count) {
            throw new IllegalArgumentException("blocks " + block + "+" + count + " are outside storage object " + objectId
                    + " (capacity " + o.capacityBlocks() + " blocks)");
        }
        if (!mayExtend && block + count > o.lengthBlocks()) {
            throw new IllegalArgumentException("blocks " + block + "+" + count + " are past the end of storage object "
                    + objectId + " (" + o.lengthBlocks() + " blocks)");
        }
        return o.baseBlock() + block;
    }

    /** Grows object {@code id} to {@code newLength} blocks on both legs before a write past its end is acknowledged. */
    private void extend(int id, long newLength) throws IOException {
        synchronized (objectLock) {
            Superblock.StorageObject o = primary.object(id);
            if (o.lengthBlocks() >= newLength) return;
            java.util.function.Consumer<Superblock> edit = sb -> {
                for (int i = 0; i < sb.objects.length; i++) {
                    Superblock.StorageObject x = sb.objects[i];
                    if (x.id() == id) {
                        sb.objects[i] = new Superblock.StorageObject(x.id(), x.flags(), x.baseBlock(),
                                Math.max(x.lengthBlocks(), newLength), x.capacityBlocks());
                    }
                }
            };
            primary.updateSuperblock(edit);
            Leg s = secondary;
            if (secondaryOnline && s != null) {
                try {
                    s.updateSuperblock(edit);
                } catch (IOException e) {
                    degrade("secondary superblock update failed: " + e.getMessage());
                }
            }
        }
    }

    /**
     * The write path for a write of {@code src} or {@code ws} ({@code fua}), or with both null a
     * discard of {@code n} blocks.
     */
    private void fork(int objectId, long block, long n, ByteBuffer src, WriteSource ws, boolean fua) throws IOException {
        begin(objectId, block, n, src, ws, fua, false).finish();
    }

    /**
     * Starts a write whose bytes the legs take from {@code src} ({@code WriteSource#start}: ublk's
     * WRITE_FIXED) and returns it in flight, without waiting for either leg; or returns null,
     * having done nothing, when the write cannot be started so: its range overlaps a write or copy
     * in flight (it would have to wait, and the caller may hold that very range in a write it has
     * started), or a leg is not local. The range lock, intent regions and tag are taken as by
     * {@link #write(int, long, WriteSource, boolean)}; {@link WriteSource.Pending#await} waits for
     * both legs and does the rest (retire the tag, or track the blocks; release the range). Until
     * then nothing is acknowledged. Every returned write must be awaited, on this thread.
     */
    public WriteSource.Pending startWrite(int objectId, long block, WriteSource src) throws IOException {
        if (primary.store().slow()) return null;
        Leg s = secondary;
        if (secondaryOnline && s != null && s.store().slow()) return null;
        InFlight w = begin(objectId, block, BlockIO.blocksOf(primary.data(), src.length()), null, src, false, true);
        return w == null ? null : w::finish;
    }

    /**
     * A forked write between its legs' start and their answers: what {@link InFlight#finish} needs
     * to wait for them and settle the tag, the tracking and the locks.
     */
    private final class InFlight {
        final int objectId;
        final long block, n, abs, held;
        final long tag;
        boolean toS;
        Future<?> sf;
        WriteSource.Pending primaryWrite, secondaryWrite;
        IOException primaryFailure;

        InFlight(int objectId, long block, long n, long abs, long held, long tag, boolean toS) {
            this.objectId = objectId;
            this.block = block;
            this.n = n;
            this.abs = abs;
            this.held = held;
            this.tag = tag;
            this.toS = toS;
        }

        /** Waits for both legs; then retires the tag (or tracks the blocks) and releases the range. */
        void finish() throws IOException {
            try {
                settle();
            } finally {
                intents.end(abs, n);
                locks.release(held);
            }
        }

        private void settle() throws IOException {
            IOException secondaryFailure = null;
            if (secondaryWrite != null) {
                try {
                    secondaryWrite.await();
                } catch (IOException e) {
                    secondaryFailure = e;
                } finally {
                    secondaryInflight.decrementAndGet();
                }
            }
            if (primaryWrite != null) {
                try {
                    primaryWrite.await();
                } catch (IOException e) {
                    primaryFailure = e;
                }
            }
            // both legs answered before anything here may throw (no write outlives the range lock)
            if (secondaryFailure != null) secondaryFailed(secondaryFailure);
            if (sf != null) {
                try {
                    sf.get();
                } catch (ExecutionException e) {
                    secondaryFailed(e.getCause());
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    throw new java.io.InterruptedIOException("interrupted waiting for the secondary");
                }
            }
            if (primaryFailure != null) {
                // the tag stays live: recovery copies these blocks primary -> secondary, so the legs agree
                throw new IOException("primary write failed: " + primaryFailure.getMessage(), primaryFailure);
            }
            Superblock.StorageObject o = primary.object(objectId);
            if (block + n > o.lengthBlocks()) {
                extend(objectId, block + n);
            }
            if (toS) {
                window.retire(tag);
            } else {
                pendingTracked.add(tag);
                trackedWrites.incrementAndGet();
            }
        }

        void secondaryFailed(Throwable e) throws IOException {
            degrade("secondary write failed: " + e.getMessage());
            trackOrFail(tag, objectId, abs, n);
            toS = false;
        }

        /** After a failure inside begin: waits for what was started, so no leg write outlives the range lock. */
        void abandon() {
            for (WriteSource.Pending p : new WriteSource.Pending[] {secondaryWrite, primaryWrite}) {
                if (p == null) continue;
                try {
                    p.await();
                } catch (IOException ignored) {
                    // the request fails anyway
                }
            }
            if (secondaryWrite != null) secondaryInflight.decrementAndGet();
            if (sf != null) {
                try {
                    sf.get();
                } catch (ExecutionException | InterruptedException | java.util.concurrent.CancellationException ignored) {
                    // the request fails anyway
                }
            }
        }
    }

    /**
     * The first half of the write path: range lock, intent regions, tag, and each leg's write
     * issued (a write source's started where it can be, {@code async}; else made here). With
     * {@code tryLock}, returns null instead of waiting for an overlapping range.
     */
    private InFlight begin(int objectId, long block, long n, ByteBuffer src, WriteSource ws, boolean fua, boolean tryLock)
            throws IOException {
        long abs = resolve(objectId, block, n, true);
        long held;
        if (tryLock) {
            held = locks.tryAcquire(abs, n);
            if (held < 0) return null;
        } else {
            try {
                held = locks.acquire(abs, n);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new java.io.InterruptedIOException("interrupted waiting for overlapping writes");
            }
        }
        boolean began = false;
        InFlight w = null;
        try {
            boolean toS = secondaryOnline;
            intents.begin(abs, n, toS);
            began = true;
            long tag;
            boolean sJournaled = toS;
            if (tagging) {
                // the tag is issued inside the commit, so the journal ring holds tags in issue order
                // (a ring slot never holds a tag newer than one still waiting to be journaled)
                long c;
                try {
                    c = committer.commit(objectId, block, n, toS);
                } catch (IOException e) {
                    throw new IOException("primary tag journal write failed: " + e.getMessage(), e);
                }
                tag = Math.abs(c);
                sJournaled = c > 0;
            } else {
                tag = window.issue();
            }
            writes.incrementAndGet();
            if (toS && !sJournaled) {
                String why = sJournalError;
                degrade("secondary tag journal write failed" + (why != null ? ": " + why : ""));
                toS = false;
            }
            w = new InFlight(objectId, block, n, abs, held, tag, toS);
            Leg s = secondary;
            boolean inline = toS && !s.store().slow() && !primary.store().slow();
            if (toS && !inline) {
                // the secondary's write on another thread, concurrent with the primary's: its own view of
                // the buffer (a write source's bytes fetched here: it is only valid on this thread)
                ByteBuffer sSrc = ws != null ? ws.buffer() : src == null ? null : src.duplicate();
                secondaryInflight.incrementAndGet();
                try {
                    w.sf = secondaryPool.submit(() -> {
                        try {
                            apply(s.data(), abs, sSrc, null, fua, n);
                        } finally {
                            secondaryInflight.decrementAndGet();
                        }
                        return null;
                    });
                } catch (RuntimeException e) {
                    secondaryInflight.decrementAndGet();
                    throw e;
                }
            } else if (!toS) {
                trackOrFail(tag, objectId, abs, n);
            }
            try {
                // local legs and a source that writes itself (ublk WRITE_FIXED): the primary's write
                // stays in flight while the secondary's is made
                if (ws != null && (inline || !toS)) w.primaryWrite = primary.data().startWrite(abs, ws, fua);
                if (w.primaryWrite == null) apply(primary.data(), abs, src, ws, fua, n);
            } catch (IOException e) {
                w.primaryFailure = e;
            }
            if (inline) {
                // local legs: the secondary's write on this thread too; with tryLock started and left in
                // flight (the caller awaits), else made now
                secondaryInflight.incrementAndGet();
                try {
                    if (tryLock && ws != null) w.secondaryWrite = s.data().startWrite(abs, ws, fua);
                    if (w.secondaryWrite == null) apply(s.data(), abs, src, ws, fua, n);
                } catch (IOException e) {
                    w.secondaryFailed(e);
                } finally {
                    // a write left in flight stays counted until settle() has awaited it
                    if (w.secondaryWrite == null) secondaryInflight.decrementAndGet();
                }
            }
            InFlight done = w;
            w = null;
            return done;
        } catch (IOException | RuntimeException | Error e) {
            if (w != null) w.abandon();
            if (began) intents.end(abs, n);
            locks.release(held);
            throw e;
        }
    }

    private void trackOrFail(long tag, int objectId, long abs, long n) throws IOException {
        if (tracking == null || !tracking.track(tag, objectId, abs, n)) {
            throw new IOException("the tracker refused blocks " + abs + "+" + n + " while the secondary is offline");
        }
    }

    /** Flushes both legs; while degraded also persists the tracking log; then shrinks the intent record. */
    public void flush() throws IOException {
        flushes.incrementAndGet();
        long mark = intents.mark();
        boolean toS = flushLegs();
        if (!toS) {
            persistTracking();
        }
        intents.flushed(mark);
    }

    /**
     * What must hold before the intent record may forget a region: its writes are durable on both
     * legs, or, for writes the secondary missed, durable on the primary AND in the persisted
     * tracking log (else a power loss would lose the only record of them).
     */
    private void flushForIntent() throws IOException {
        if (!flushLegs()) {
            persistTracking();
        }
    }

    /** Flushes both legs concurrently; returns whether the secondary took part. */
    private boolean flushLegs() throws IOException {
        boolean toS = secondaryOnline;
        Leg s = secondary;
        Future<?> sf = toS ? secondaryPool.submit(() -> {
            s.data().flush();
            return null;
        }) : null;
        primary.data().flush();
        if (sf != null) {
            try {
                sf.get();
            } catch (ExecutionException e) {
                degrade("secondary flush failed: " + e.getCause().getMessage());
                return false;
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new java.io.InterruptedIOException("interrupted flushing the secondary");
            }
        }
        return toS;
    }

    /** Persists the tracking log and retires the tracked writes it covers. */
    public void persistTracking() throws IOException {
        if (tracking == null) return;
        synchronized (persistLock) {
            List<Long> covered = new ArrayList<>(pendingTracked); // tracked before the log is encoded
            tracking.persist();
            for (long t : covered) {
                pendingTracked.remove(t);
                window.retire(t);
            }
        }
    }

    // ---------------------------------------------------------------- outage and return

    /** The secondary failed: tracking starts. Idempotent. */
    public void degrade(String reason) {
        degrade(reason, false);
    }

    /**
     * The secondary goes away: tracking starts. Writes the secondary took but has not yet made
     * durable are at risk (power loss on its side): when {@code drainAndFlush} (a user's detach,
     * the secondary still reachable) in-flight secondary writes are awaited and the secondary
     * flushed, so only writes from now on are tracked; otherwise, or if that flush fails, the
     * regions of the intent record (a superset of the unflushed writes) go into the tracking log.
     */
    public void degrade(String reason, boolean drainAndFlush) {
        synchronized (this) {
            if (!secondaryOnline) return;
            secondaryOnline = false;
            degradedReason = reason;
        }
        boolean flushed = false;
        if (drainAndFlush) {
            long until = System.currentTimeMillis() + 30_000;
            while (secondaryInflight.get() > 0 && System.currentTimeMillis() < until) {
                try {
                    Thread.sleep(1);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    break;
                }
            }
            Leg s = secondary;
            if (secondaryInflight.get() == 0 && s != null) {
                try {
                    s.data().flush();
                    flushed = true;
                } catch (IOException e) {
                    // the secondary is failing after all: fall back to marking
                }
            }
        }
        if (!flushed && tracking != null) {
            int rb = intents.regionBlocks();
            long blocks = primary.superblock().dataBlocks;
            for (long r : intents.uncleanRegions()) {
                long a = r * rb, n = Math.min(rb, blocks - a);
                if (n > 0) tracking.track(0, 0, a, n);
            }
        }
        try {
            // generations: the secondary now holds the old current generation; the primary moves on
            primary.updateSuperblock(sb -> {
                if (sb.bitmapGen == 0) sb.bitmapGen = sb.currentGen;
                sb.currentGen = newGeneration(sb.currentGen);
                sb.flags |= Superblock.FLAG_DEGRADED;
            });
        } catch (IOException e) {
            // the primary failing too surfaces on the data path
        }
        listener.onDegraded(reason);
    }

    /**
     * A mirror that starts without its secondary (unreachable, or failing during the open) records
     * the outage on the primary before it takes a write, as {@link #degrade} does for one lost
     * while running: the secondary keeps the old generation (bitmapGen), the primary moves on.
     */
    public static void recordOutageStart(Leg primary) throws IOException {
        primary.updateSuperblock(sb -> {
            if (sb.bitmapGen == 0) sb.bitmapGen = sb.currentGen;
            sb.currentGen = newGeneration(sb.currentGen);
            sb.flags |= Superblock.FLAG_DEGRADED;
        });
    }

    /** The reason a mirror opened without its secondary (status shows it; the link monitor starts from it). */
    public void startedDegraded(String reason) {
        synchronized (this) {
            if (secondaryOnline) return;
            degradedReason = reason;
        }
        listener.onDegraded(reason);
    }

    static long newGeneration(long old) {
        long g;
        do {
            g = UUID.randomUUID().getMostSignificantBits();
        } while (g == 0 || g == old);
        return g;
    }

    /**
     * The secondary is back: new writes go to both legs from now on. Blocks written while it was
     * away are still in the tracking log; the resync copies them. The caller checked generations.
     */
    public void reattach(Leg s, TagTable sTable) {
        synchronized (this) {
            this.secondary = s;
            if (sTable != null || sJournal == null) {
                this.sJournal = new TagJournal(s, sTable != null ? sTable : new TagTable());
            }
            intents.setSecondary(s);
            this.secondaryOnline = true;
            this.degradedReason = null;
        }
        try {
            // the secondary's journal still holds entries from before its outage; they are covered by
            // the tracking log, so retire them now, or a crash would repair their blocks once more.
            // Not under this object's lock: a commit may wait for writers, and writers may need it.
            journalWatermark(" at attach");
        } catch (IOException e) {
            degrade("tag journal write failed at attach: " + e.getMessage());
        }
    }

    public Leg primary() {
        return primary;
    }

    public Leg secondary() {
        return secondary;
    }

    /** Stops background work without writing anything (a simulated kill -9). */
    public void closeNow() {
        ticker.shutdownNow();
        secondaryPool.shutdownNow();
    }

    @Override
    public void close() throws IOException {
        // shutdown, not shutdownNow: an interrupt would land in a tick's journal commit or tracking
        // persist, and an interrupted FileChannel write closes the leg's channel for good
        // (ClosedByInterruptException), failing this close's own persist and commit below
        ticker.shutdown();
        try {
            ticker.awaitTermination(5, TimeUnit.SECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        if (!pendingTracked.isEmpty()) persistTracking();
        if (window.watermark() != lastWatermarkWritten) committer.commit(-1, 0, 0, secondaryOnline);
        secondaryPool.shutdown();
    }

    // ---------------------------------------------------------------- group commit

    /**
     * Group commit of tag journal entries, leader/follower style: the first writer to find no
     * commit in progress writes every entry queued so far, for itself and the others, to both
     * legs' journals; the rest wait for it. No thread of its own, no timer on the hot path.
     */
    private final class Committer {
        private final class Pending {
            final int objectId; // < 0: no entry, a watermark-only block
            final long block, count;
            final boolean toS;
            long tag;
            TagRecord rec;
            boolean done;
            boolean sOk;
            IOException error;

            Pending(int objectId, long block, long count, boolean toS) {
                this.objectId = objectId;
                this.block = block;
                this.count = count;
                this.toS = toS;
            }

            void issue() {
                if (objectId >= 0) {
                    tag = window.issue();
                    rec = new TagRecord(tag, objectId, block, count);
                }
            }

            /** The tag, positive when the secondary's journal got the entry too, negative when not. */
            long result() {
                if (objectId < 0) return toS && !sOk ? -1 : 1;
                return sOk ? tag : -tag;
            }
        }

        private final List<Pending> queue = new ArrayList<>();
        private boolean leader;

        /** Appends are memory copies ({@link #direct}): both journals are mapped. */
        boolean appendsInMemory() {
            TagJournal sj = sJournal;
            return pJournal.mapped() && (sj == null || sj.mapped());
        }

        /**
         * Issues a tag for the write and journals its entry on the primary (and the secondary when
         * {@code toS}); returns the tag, negated when the secondary's journal did not take it.
         * {@code objectId < 0}: no entry, just a block carrying the current watermark (returns 1,
         * or -1 when {@code toS} and the secondary's journal did not take it).
         * On failure the tag is retired (nothing was written) and the exception thrown.
         */
        long commit(int objectId, long block, long count, boolean toS) throws IOException {
            TagJournal sj = sJournal;
            if (pJournal.mapped() && (!toS || sj == null || sj.mapped())) {
                return direct(objectId, block, count, toS);
            }
            Pending me = new Pending(objectId, block, count, toS);
            grouped(me);
            if (me.error != null) {
                if (me.tag != 0) window.retire(me.tag);
                throw me.error;
            }
            return me.result();
        }

        private void grouped(Pending me) throws IOException {
            List<Pending> batch;
            synchronized (this) {
                queue.add(me);
                while (leader && !me.done) {
                    try {
                        wait();
                    } catch (InterruptedException e) {
                        Thread.currentThread().interrupt();
                        if (me.done) return;
                        queue.remove(me);
                        throw new java.io.InterruptedIOException("interrupted in group commit");
                    }
                }
                if (me.done) return;
                leader = true;
                batch = new ArrayList<>(queue);
                queue.clear();
            }
            try {
                for (Pending p : batch) p.issue(); // in batch order: the ring holds tags in issue order
                writeBatch(batch);
            } catch (IOException e) {
                for (Pending p : batch) p.error = e;
            } finally {
                synchronized (this) {
                    for (Pending p : batch) p.done = true;
                    leader = false;
                    notifyAll();
                }
            }
        }

        /**
         * Mapped journals: an append is a memory copy, cheaper than handing it to a leader (which
         * costs a park and an unpark per write): each writer appends its own block under the lock.
         * What {@link #commit} returns; no Pending, no record object, no list.
         */
        private long direct(int objectId, long block, long count, boolean toS) throws IOException {
            long tag = 0;
            IOException error = null;
            boolean sOk = false;
            synchronized (this) {
                if (objectId >= 0) tag = window.issue();
                long wm = window.watermark();
                try {
                    appendOne(pJournal, objectId, tag, block, count, wm);
                } catch (IOException e) {
                    error = e;
                }
                if (error == null) {
                    TagJournal sj = sJournal;
                    if (toS && sj != null && secondaryOnline) {
                        try {
                            appendOne(sj, objectId, tag, block, count, wm);
                            sOk = true;
                        } catch (IOException e) {
                            sJournalError = e.getMessage();
                        }
                    }
                    lastWatermarkWritten = wm;
                }
            }
            if (error != null) {
                if (tag != 0) window.retire(tag);
                throw error;
            }
            if (objectId < 0) return toS && !sOk ? -1 : 1;
            return sOk ? tag : -tag;
        }

        /** One block: the record (tag, objectId, block, count), or none when {@code objectId < 0}. */
        private void appendOne(TagJournal j, int objectId, long tag, long block, long count, long wm) throws IOException {
            waitForRingSlot(j);
            if (objectId >= 0) {
                j.appendOne(hostId, wm, tag, objectId, block, count);
                journalRecords.incrementAndGet();
            } else {
                j.appendWatermark(hostId, wm);
            }
            journalBlocks.incrementAndGet();
        }

        private void writeBatch(List<Pending> batch) throws IOException {
            List<TagRecord> all = new ArrayList<>(), toS = new ArrayList<>();
            for (Pending p : batch) {
                if (p.rec == null) continue;
                all.add(p.rec);
                if (p.toS) toS.add(p.rec);
            }
            long wm = window.watermark();
            appendAll(pJournal, all, wm);
            boolean sOk = true;
            TagJournal sj = sJournal;
            if (sj != null && secondaryOnline) {
                try {
                    appendAll(sj, toS, wm);
                } catch (IOException e) {
                    sJournalError = e.getMessage();
                    sOk = false;
                }
            } else {
                sOk = false;
            }
            lastWatermarkWritten = wm;
            for (Pending p : batch) p.sOk = p.toS && sOk;
        }

        private void appendAll(TagJournal j, List<TagRecord> recs, long wm) throws IOException {
            int i = 0;
            do {
                int end = Math.min(recs.size(), i + org.ublkmirror.tags.TagJournalBlock.MAX_RECORDS);
                waitForRingSlot(j);
                j.append(hostId, wm, recs.subList(i, end));
                journalBlocks.incrementAndGet();
                journalRecords.addAndGet(end - i);
                i = end;
            } while (i < recs.size());
        }

        /** The ring never overwrites a live entry: wait for the watermark to pass it. */
        private void waitForRingSlot(TagJournal j) throws IOException {
            long need = j.nextSlotMaxTag();
            while (window.watermark() < need) {
                persistTracking(); // tracked writes retire once the log is persisted
                try {
                    window.awaitWatermark(need, 100);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    throw new java.io.InterruptedIOException("interrupted waiting for the tag journal ring");
                }
            }
        }
    }
}
