package org.ublkmirror.fork;

import org.ublkmirror.leg.Leg;

import java.io.IOException;
import java.util.HashMap;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.TreeSet;
import java.util.UUID;

/**
 * Keeps the {@link IntentRecord} true: a region is in the durable record before any write to it
 * is issued, and leaves it only once every write to it is known durable on both legs (a flush
 * of both legs that started after the write ended). Writes to regions already in the record cost
 * nothing here; a new region costs one FUA write of 4 KiB per leg.
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
    private final TreeSet<Long> durable = new TreeSet<>();
    private final Map<Long, Integer> inflight = new HashMap<>();
    private final Map<Long, Long> lastEnd = new HashMap<>();
    private final LinkedHashMap<Long, Boolean> lru = new LinkedHashMap<>(16, 0.75f, true);
    private long ops;
    private long seq;
    private long recordWrites;

    IntentLog(Leg primary, Leg secondary, int maxActive, LegFlusher flusher, long startSeq) {
        this.primary = primary;
        this.secondary = secondary;
        this.volume = primary.superblock().volumeUuid;
        this.regionBlocks = primary.superblock().regionBlocks;
        this.maxActive = Math.min(maxActive, IntentRecord.MAX_REGIONS);
        this.flusher = flusher;
        this.seq = startSeq;
    }

    void setSecondary(Leg s) {
        this.secondary = s;
    }

    /** Call before issuing a write to {@code [start, start+count)}. */
    synchronized void begin(long start, long count, boolean toSecondary) throws IOException {
        long r0 = start / regionBlocks, r1 = (start + Math.max(1, count) - 1) / regionBlocks;
        boolean changed = false;
        for (long r = r0; r <= r1; r++) {
            inflight.merge(r, 1, Integer::sum);
            lru.put(r, Boolean.TRUE);
            changed |= durable.add(r);
        }
        if (!changed) {
            return;
        }
        if (durable.size() > maxActive) {
            evict(r0, r1);
        }
        write(true, toSecondary);
    }

    synchronized void end(long start, long count) {
        long r0 = start / regionBlocks, r1 = (start + Math.max(1, count) - 1) / regionBlocks;
        ops++;
        for (long r = r0; r <= r1; r++) {
            inflight.merge(r, -1, Integer::sum);
            if (inflight.get(r) <= 0) inflight.remove(r);
            lastEnd.put(r, ops);
        }
    }

    /** A mark to take before flushing both legs; pass it to {@link #flushed} afterwards. */
    synchronized long mark() {
        return ops;
    }

    /** Both legs were flushed after {@code mark}: idle regions whose writes ended before it are clean. */
    synchronized void flushed(long mark, boolean toSecondary) throws IOException {
        if (dropClean(mark, -1, -1)) {
            write(false, toSecondary); // a stale, larger record on disk only costs a larger repair
        }
    }

    private boolean dropClean(long mark, long keep0, long keep1) {
        boolean any = false;
        for (Iterator<Long> it = durable.iterator(); it.hasNext(); ) {
            long r = it.next();
            if ((r >= keep0 && r <= keep1) || inflight.containsKey(r) || lastEnd.getOrDefault(r, 0L) > mark) continue;
            it.remove();
            lastEnd.remove(r);
            lru.remove(r);
            any = true;
        }
        return any;
    }

    private void evict(long keep0, long keep1) throws IOException {
        long m = ops;
        flusher.flushBoth(); // makes every ended write durable on both legs
        dropClean(m, keep0, keep1);
    }

    private void write(boolean fua, boolean toSecondary) throws IOException {
        IntentRecord rec = new IntentRecord(++seq, volume, regionBlocks, new TreeSet<>(durable));
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

    /** The regions now in the record. */
    synchronized java.util.List<Long> regionSet() {
        return new java.util.ArrayList<>(durable);
    }

    synchronized int activeRegions() {
        return durable.size();
    }

    synchronized long recordWrites() {
        return recordWrites;
    }

    int regionBlocks() {
        return regionBlocks;
    }
}
