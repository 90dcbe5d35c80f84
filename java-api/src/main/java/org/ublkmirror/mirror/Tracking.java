package org.ublkmirror.mirror;

import org.roaringbitmap.longlong.Roaring64NavigableMap;
import org.ublkmirror.fork.Forker;
import org.ublkmirror.leg.Leg;
import org.ublkmirror.leg.Superblock;
import org.ublkmirror.logship.ReceiverClient;
import org.ublkmirror.logship.RemoteLogStore;
import org.ublkmirror.track.AsyncLogStore;
import org.ublkmirror.track.DirectoryLogStore;
import org.ublkmirror.track.LogStore;
import org.ublkmirror.track.SlotLogStore;
import org.ublkmirror.track.TrackStatus;
import org.ublkmirror.track.Tracker;
import org.ublkmirror.track.TrackingCommand;
import org.ublkmirror.track.TrackingLog;

import java.io.Closeable;
import java.io.IOException;
import java.util.ArrayList;
import java.util.List;

/**
 * The mirror's tracker: kept in the primary leg's tracking log slots, shipped to the configured
 * second location. The forker sends it tracking commands while the secondary is away.
 */
final class Tracking implements Forker.Tracking, Closeable {
    private final Tracker tracker;
    private final java.util.function.LongSupplier clock;
    private Thread persister;
    private volatile boolean stop;

    Tracking(Tracker tracker, java.util.function.LongSupplier clock) {
        this.tracker = tracker;
        this.clock = clock;
    }

    static String shippedName(String mirror) {
        return mirror + ".trackinglog";
    }

    /**
     * The local copy, then the shipped ones. A log receiver ({@code --ship-to}) is shipped to
     * asynchronously ({@link AsyncLogStore}) when {@code opts} is given (a running mirror), so a
     * receiver that is down or slow never holds up a FLUSH; without opts (offline reading) it is
     * only read, synchronously, and only if the local copy is unusable.
     */
    /**
     * Timeouts to a log receiver: the I/O one is per read (bytes flowing keep a large record going).
     * They bound the only synchronous use, reading the receiver's copy at open when the local copy
     * is missing or unusable (a new mirror's first open, before its first persist).
     */
    static final ReceiverClient.Options SHIP_CLIENT = ReceiverClient.Options.defaults()
            .withTimeouts(java.time.Duration.ofSeconds(3), java.time.Duration.ofSeconds(10));

    static List<LogStore> stores(MirrorConfig cfg, Leg primary, Mirror.Options opts) throws IOException {
        Superblock sb = primary.superblock();
        List<LogStore> stores = new ArrayList<>();
        stores.add(new SlotLogStore(primary.store(), sb.trackOffset, sb.trackSlotBytes));
        if (cfg.shipDir() != null) stores.add(new DirectoryLogStore(cfg.shipDir(), shippedName(cfg.name())));
        if (cfg.shipTo() != null) {
            RemoteLogStore remote = new RemoteLogStore(cfg.shipTo(), SHIP_CLIENT, cfg.name());
            stores.add(opts == null ? remote : new AsyncLogStore(remote, opts.shipBackoffMinMillis, opts.shipBackoffMaxMillis));
        }
        return stores;
    }

    static Tracking open(MirrorConfig cfg, Leg primary, Mirror.Options opts) throws IOException {
        Superblock sb = primary.superblock();
        List<LogStore> stores = stores(cfg, primary, opts);
        try {
            Tracker t = Tracker.load(stores, sb.volumeUuid,
                    () -> new TrackingLog(sb.volumeUuid, 0, sb.blockSize, sb.dataBlocks, cfg.epochMillis()));
            return new Tracking(t, opts.clock);
        } catch (IOException | RuntimeException e) {
            closeShippers(stores, 0);
            throw e;
        }
    }

    static Tracker load(MirrorConfig cfg, Leg primary) throws IOException {
        Superblock sb = primary.superblock();
        List<LogStore> stores = stores(cfg, primary, null);
        try {
            return Tracker.load(stores, sb.volumeUuid,
                    () -> new TrackingLog(sb.volumeUuid, 0, sb.blockSize, sb.dataBlocks, cfg.epochMillis()));
        } finally {
            for (LogStore s : stores) if (s instanceof RemoteLogStore r) r.close(); // only read: its connection is done
        }
    }

    private static void closeShippers(List<LogStore> stores, long flushMillis) {
        for (LogStore s : stores) if (s instanceof AsyncLogStore a) a.close(flushMillis);
    }

    /** The asynchronous shipping of the log to a receiver: what was shipped, when, the error; empty without --ship-to. */
    List<AsyncLogStore.Status> shipping() {
        List<AsyncLogStore.Status> out = new ArrayList<>();
        for (LogStore s : tracker.stores()) if (s instanceof AsyncLogStore a) out.add(a.status());
        return out;
    }

    /** Stops shipping at once (kill -9 in tests: nothing more leaves). */
    void abandonShipping() {
        closeShippers(tracker.stores(), 0);
    }

    Tracker tracker() {
        return tracker;
    }

    private final java.util.concurrent.atomic.AtomicLong writeBlocks = new java.util.concurrent.atomic.AtomicLong(),
            supersetBlocks = new java.util.concurrent.atomic.AtomicLong();

    /** Blocks of tracking commands for application writes (tag != 0), with repeats. */
    long writeBlocks() {
        return writeBlocks.get();
    }

    /** Blocks marked without a write (tag 0: intent regions on failure, re-marks, repair), with repeats. */
    long supersetBlocks() {
        return supersetBlocks.get();
    }

    @Override
    public boolean track(long tag, int objectId, long startBlock, long blockCount) {
        (tag != 0 ? writeBlocks : supersetBlocks).addAndGet(blockCount);
        PendingClears p = pending;
        if (p != null) p.forget(startBlock, blockCount); // tracked after the copy: the clear must not win
        return tracker.track(new TrackingCommand(tag, objectId, startBlock, blockCount, clock.getAsLong())) == TrackStatus.TRACKED;
    }

    void markAll(Roaring64NavigableMap blocks) {
        long now = clock.getAsLong();
        forEachRange(blocks, (start, len) -> {
            supersetBlocks.addAndGet(len);
            PendingClears p = pending;
            if (p != null) p.forget(start, len);
            tracker.track(new TrackingCommand(0, 0, start, len, now));
        });
    }

    @Override
    public synchronized void persist() throws IOException {
        tracker.persist();
    }

    TrackingLog log() {
        return tracker.log();
    }

    long dirtyCount() {
        return tracker.log().dirtyCount();
    }

    void clear(long start, long count) {
        tracker.clear(start, count);
    }

    private volatile PendingClears pending;

    /** Starts keeping a resync's pending clears (see {@link PendingClears}); one resync at a time. */
    PendingClears watchResync() {
        PendingClears p = new PendingClears();
        pending = p;
        return p;
    }

    /** The resync ended: its clears not applied yet are dropped (those blocks stay dirty: copied again). */
    void unwatch(PendingClears p) {
        if (pending == p) pending = null;
    }

    /**
     * The clears a resync owes the log, kept until the secondary's flush covers them (the
     * flush-before-checkpoint rule of {@code resync.ResyncListener}): extents copied since the
     * last barrier, and extents sealed by the barrier whose flush has not completed yet. Only
     * {@link #apply} clears blocks from the in-memory log, so no persist of the log, by a
     * checkpoint or by anything else (the forker's FLUSH, the idle tick), can call a block clean
     * before the secondary has it durably. A block tracked meanwhile (the secondary failed a
     * write to it, or an outage marked its region) is forgotten here first, so its new dirty bit
     * is never cleared by an older copy.
     */
    final class PendingClears {
        private Roaring64NavigableMap copied = new Roaring64NavigableMap(), sealed = new Roaring64NavigableMap();

        synchronized void add(long start, long count) {
            copied.addRange(start, start + count);
        }

        /** A flush is about to be issued: everything copied so far is covered by it. */
        synchronized void seal() {
            sealed.or(copied);
            copied = new Roaring64NavigableMap();
        }

        /** The flush after the last seal succeeded: its blocks leave the log; returns how many. */
        synchronized long apply() {
            long[] n = {0};
            forEachRange(sealed, (s, len) -> {
                tracker.clear(s, len);
                n[0] += len;
            });
            sealed = new Roaring64NavigableMap();
            return n[0];
        }

        synchronized void forget(long start, long count) {
            if (copied.isEmpty() && sealed.isEmpty()) return;
            Roaring64NavigableMap r = new Roaring64NavigableMap();
            r.addRange(start, start + count);
            copied.andNot(r);
            sealed.andNot(r);
        }

        synchronized long pendingBlocks() {
            return copied.getLongCardinality() + sealed.getLongCardinality();
        }
    }

    interface RangeSink {
        void accept(long start, long len);
    }

    /** The set bits of {@code blocks} as runs of consecutive blocks, ascending. */
    static void forEachRange(Roaring64NavigableMap blocks, RangeSink sink) {
        org.roaringbitmap.longlong.LongIterator it = blocks.getLongIterator();
        long start = -1, len = 0;
        while (it.hasNext()) {
            long b = it.next();
            if (start >= 0 && b == start + len) {
                len++;
                continue;
            }
            if (start >= 0) sink.accept(start, len);
            start = b;
            len = 1;
        }
        if (start >= 0) sink.accept(start, len);
    }

    List<String> shipErrors() {
        return tracker.shipErrors();
    }

    void startAutoPersist(Forker forker, long periodMillis) {
        if (periodMillis <= 0) return;
        persister = new Thread(() -> {
            while (!stop) {
                try {
                    Thread.sleep(periodMillis);
                    if (forker.pendingTrackedCount() > 0) forker.persistTracking();
                } catch (InterruptedException e) {
                    return;
                } catch (IOException | RuntimeException e) {
                    // retried next period; ship errors are reported by status
                }
            }
        }, "tracking-persist");
        persister.setDaemon(true);
        persister.start();
    }

    void stopAutoPersist() {
        stop = true;
        Thread t = persister;
        if (t != null) {
            t.interrupt();
            try {
                t.join(5000);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
    }

    @Override
    public void close() throws IOException {
        stopAutoPersist();
        try {
            tracker.close();
        } finally {
            closeShippers(tracker.stores(), 5000); // up to 5 s to ship the final record
        }
    }
}
