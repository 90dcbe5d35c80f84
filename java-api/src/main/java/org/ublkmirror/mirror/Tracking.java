package org.ublkmirror.mirror;

import org.roaringbitmap.longlong.Roaring64NavigableMap;
import org.ublkmirror.fork.Forker;
import org.ublkmirror.leg.Leg;
import org.ublkmirror.leg.Superblock;
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

    private Tracking(Tracker tracker, java.util.function.LongSupplier clock) {
        this.tracker = tracker;
        this.clock = clock;
    }

    static String shippedName(String mirror) {
        return mirror + ".trackinglog";
    }

    static List<LogStore> stores(MirrorConfig cfg, Leg primary) throws IOException {
        Superblock sb = primary.superblock();
        List<LogStore> stores = new ArrayList<>();
        stores.add(new SlotLogStore(primary.store(), sb.trackOffset, sb.trackSlotBytes));
        if (cfg.shipDir() != null) stores.add(new DirectoryLogStore(cfg.shipDir(), shippedName(cfg.name())));
        return stores;
    }

    static Tracking open(MirrorConfig cfg, Leg primary, Mirror.Options opts) throws IOException {
        Superblock sb = primary.superblock();
        Tracker t = load(cfg, primary);
        return new Tracking(t, opts.clock);
    }

    static Tracker load(MirrorConfig cfg, Leg primary) throws IOException {
        Superblock sb = primary.superblock();
        return Tracker.load(stores(cfg, primary), sb.volumeUuid,
                () -> new TrackingLog(sb.volumeUuid, 0, sb.blockSize, sb.dataBlocks, cfg.epochMillis()));
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
        return tracker.track(new TrackingCommand(tag, objectId, startBlock, blockCount, clock.getAsLong())) == TrackStatus.TRACKED;
    }

    void markAll(Roaring64NavigableMap blocks) {
        long now = clock.getAsLong();
        org.roaringbitmap.longlong.LongIterator it = blocks.getLongIterator();
        long start = -1, len = 0;
        while (true) {
            boolean has = it.hasNext();
            long b = has ? it.next() : -1;
            if (has && start >= 0 && b == start + len) {
                len++;
                continue;
            }
            if (start >= 0) {
                supersetBlocks.addAndGet(len);
                tracker.track(new TrackingCommand(0, 0, start, len, now));
            }
            if (!has) break;
            start = b;
            len = 1;
        }
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
        tracker.close();
    }
}
