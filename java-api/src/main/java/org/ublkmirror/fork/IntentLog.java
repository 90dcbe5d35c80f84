package org.ublkmirror.fork;

import org.ublkmirror.leg.Leg;

import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import java.util.TreeSet;
import java.util.UUID;

/**
 * Keeps the {@link IntentRecord} true: a region is in the durable record before any write to it
 * is issued, and leaves it only once every write to it is known durable on both legs (a flush of
 * both legs that began after the write ended: the region is then <em>clean</em>).
 *
 * <p>Like DRBD's activity log, the record is a hot set kept in LRU order, not a list of what is
 * dirty now: writes to regions already in it cost nothing; a region enters with one FUA write of
 * 4 KiB per leg; when the set is full, the least recently used clean idle regions leave (no I/O
 * beyond the record write that adds the new one), and only if none is clean are both legs flushed
 * first. A flush from the application marks regions clean without rewriting the record.
 */
final class IntentLog {
    interface LegFlusher {
        void flushBoth() throws IOException;
    }

    private final Leg primary;
    private volatile Leg secondary;
    private final UUID volume;
    private final int regionBlocks;
    private final int maxActive;
    private final LegFlusher flusher;
    /**
     * The regions in the record, least recently used first, each with its writes in flight and the
     * op count at which its last write ended (a region in flight is always in the record).
     */
    private final RegionTable durable;
    private long ops;
    /** Every write that ended at or before this op count is durable on both legs. */
    private long cleanMark;
    private long seq;
    private long recordWrites;
    private long forcedFlushes;

    IntentLog(Leg primary, Leg secondary, int maxActive, LegFlusher flusher, long startSeq) {
        this.primary = primary;
        this.secondary = secondary;
        this.volume = primary.superblock().volumeUuid;
        this.regionBlocks = primary.superblock().regionBlocks;
        this.maxActive = Math.max(1, Math.min(maxActive, IntentRecord.MAX_REGIONS));
        this.flusher = flusher;
        this.seq = startSeq;
        this.durable = new RegionTable(this.maxActive + 1);
    }

    void setSecondary(Leg s) {
        this.secondary = s;
    }

    /** Whether every region of {@code [start, start+count)} is in the record now: {@link #begin} would write nothing. */
    synchronized boolean holds(long start, long count) {
        long r0 = start / regionBlocks, r1 = (start + Math.max(1, count) - 1) / regionBlocks;
        for (long r = r0; r <= r1; r++) {
            if (durable.find(r) < 0) return false;
        }
        return true;
    }

    /** Call before issuing a write to {@code [start, start+count)}. */
    synchronized void begin(long start, long count, boolean toSecondary) throws IOException {
        long r0 = start / regionBlocks, r1 = (start + Math.max(1, count) - 1) / regionBlocks;
        boolean changed = false;
        for (long r = r0; r <= r1; r++) {
            int s = durable.find(r);
            if (s < 0) {
                s = durable.add(r); // enters as the most recently used
                changed = true;
            } else {
                durable.touch(s); // moves r to most recently used
            }
            durable.addInflight(s, 1);
        }
        if (!changed) {
            return;
        }
        if (durable.size() > maxActive) {
            makeRoom(r0, r1);
        }
        write(true, toSecondary);
    }

    synchronized void end(long start, long count) {
        long r0 = start / regionBlocks, r1 = (start + Math.max(1, count) - 1) / regionBlocks;
        ops++;
        for (long r = r0; r <= r1; r++) {
            int s = durable.find(r);
            if (s < 0) continue; // not reached: begin put r in the record, and it stays while in flight
            if (durable.inflight(s) > 0) durable.addInflight(s, -1);
            durable.setLastEnd(s, ops);
        }
    }

    /** A mark to take before flushing both legs; pass it to {@link #flushed} afterwards. */
    synchronized long mark() {
        return ops;
    }

    /** Both legs were flushed after {@code mark}: every write ended before it is durable on both. */
    synchronized void flushed(long mark) {
        cleanMark = Math.max(cleanMark, mark);
    }

    private boolean clean(int slot) {
        return durable.inflight(slot) == 0 && durable.lastEnd(slot) <= cleanMark;
    }

    /** Drops clean idle regions, least recently used first, until the set fits; flushes first if none is clean. */
    private void makeRoom(long keep0, long keep1) throws IOException {
        if (dropClean(keep0, keep1) == 0) {
            long m = ops;
            forcedFlushes++;
            flusher.flushBoth(); // every write ended so far becomes durable on both legs
            cleanMark = Math.max(cleanMark, m);
            dropClean(keep0, keep1);
        }
    }

    private int dropClean(long keep0, long keep1) {
        int target = Math.max(1, maxActive - Math.max(1, maxActive / 8)); // leave some slack: fewer record writes
        int dropped = 0;
        for (int s = durable.first(); s >= 0 && durable.size() > target; ) {
            int following = durable.next(s);
            long r = durable.region(s);
            if (!(r >= keep0 && r <= keep1) && clean(s)) {
                durable.remove(s);
                dropped++;
            }
            s = following;
        }
        return dropped;
    }

    private void write(boolean fua, boolean toSecondary) throws IOException {
        TreeSet<Long> regions = new TreeSet<>();
        for (int s = durable.first(); s >= 0; s = durable.next(s)) regions.add(durable.region(s));
        IntentRecord rec = new IntentRecord(++seq, volume, regionBlocks, regions);
        rec.write(primary, fua);
        Leg s = secondary;
        if (toSecondary && s != null) {
            try {
                rec.write(s, fua);
            } catch (IOException e) {
                // the secondary's copy only widens a power-loss repair; its failure is handled by the data path
            }
        }
        recordWrites++;
    }

    /** Regions that may hold writes not yet durable on both legs (in flight, or ended after the last flush). */
    synchronized List<Long> uncleanRegions() {
        List<Long> out = new ArrayList<>();
        for (int s = durable.first(); s >= 0; s = durable.next(s)) {
            if (!clean(s)) out.add(durable.region(s));
        }
        return out;
    }

    synchronized int activeRegions() {
        return durable.size();
    }

    synchronized long recordWrites() {
        return recordWrites;
    }

    synchronized long forcedFlushes() {
        return forcedFlushes;
    }

    int regionBlocks() {
        return regionBlocks;
    }
}
