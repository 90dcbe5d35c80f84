package org.ublkmirror.track;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Objects;
import java.util.TreeMap;
import java.util.UUID;

import org.roaringbitmap.longlong.LongIterator;
import org.roaringbitmap.longlong.Roaring64NavigableMap;

/**
 * The tracking log in memory: the blocks written while the secondary was away, grouped in
 * time epochs.
 *
 * <p>Each {@link Epoch} has an id, the time of its first write ({@code startMillis}), the time
 * of its last write ({@code endMillis}) and a bitmap of the blocks written during it. A mark
 * opens a new epoch when the current one started {@code epochMillis} or more before the mark's
 * time, or after {@link #rollEpoch()}. There is deliberately no separate union bitmap (it would
 * double the memory): {@link #dirty()} ORs the epochs on demand.
 *
 * <p>Bitmaps are {@link Roaring64NavigableMap} (64-bit block addresses). Chosen by measurement
 * (bench/results/tracking.md): for a sparse random set it costs about 2.1 bytes per dirty block
 * in memory against 2.4 for {@code Roaring64Bitmap}, and in RoaringBitmap 1.6.29
 * {@code Roaring64Bitmap.addRange} took milliseconds per call, which rules it out for
 * per-write marking.
 *
 * <p>Thread safety: every method synchronizes on this object. {@link TrackingLogFormat#encode}
 * holds the same lock while it serializes, so a record is always a consistent snapshot.
 *
 * <p>{@code coveredTag}: the highest write tag whose blocks are all in the log; maintained by the
 * {@link Tracker}, stored in the record, used by the engine to retire tag-table entries.
 */
public final class TrackingLog {
    public static final long DEFAULT_EPOCH_MILLIS = 60_000L;
    /**
     * Default bound on the number of epochs. Each epoch has its own containers, so a sparse set
     * spread over many epochs costs more per dirty block (measured: 2.9 B/block in one epoch, 9.5
     * in 10, 33 in 60, heap included); beyond the bound, adjacent epochs are merged.
     */
    public static final int DEFAULT_MAX_EPOCHS = 64;

    /** One time slice of the log. Mutable only through the owning log, under its lock. */
    public static final class Epoch {
        private final int id;
        private long startMillis;
        private long endMillis;
        private final Roaring64NavigableMap blocks;

        Epoch(int id, long startMillis, long endMillis, Roaring64NavigableMap blocks) {
            this.id = id;
            this.startMillis = startMillis;
            this.endMillis = endMillis;
            this.blocks = blocks;
        }

        public int id() {
            return id;
        }

        public long startMillis() {
            return startMillis;
        }

        public long endMillis() {
            return endMillis;
        }

        /** The live bitmap: only for the log and the format, under the log's lock. */
        Roaring64NavigableMap bitmap() {
            return blocks;
        }
    }

    /** An immutable view of an epoch for users: {@code mirrorctl log} lists these. */
    public record EpochInfo(int id, long startMillis, long endMillis, long blockCount) {
    }

    private final UUID volumeUuid;
    private final int objectId;
    private final int blockSize;
    private long volumeBlocks;
    private final long epochMillis;
    private final ArrayList<Epoch> epochs = new ArrayList<>();
    private int nextEpochId = 1;
    private boolean sealed; // rollEpoch() was called: the next mark opens a new epoch
    private long coveredTag;
    private long sequence;
    private int maxEpochs = DEFAULT_MAX_EPOCHS;

    /**
     * An empty log.
     *
     * @param volumeUuid   the volume this log belongs to
     * @param objectId     the storage object id within the leg
     * @param blockSize    tracking granularity in bytes (4096 by default)
     * @param volumeBlocks size of the volume in blocks; marks outside it are rejected
     * @param epochMillis  epoch length; {@link #DEFAULT_EPOCH_MILLIS} unless configured
     */
    public TrackingLog(UUID volumeUuid, int objectId, int blockSize, long volumeBlocks, long epochMillis) {
        this.volumeUuid = Objects.requireNonNull(volumeUuid, "volumeUuid");
        if (blockSize <= 0) {
            throw new IllegalArgumentException("block size must be positive, got " + blockSize);
        }
        if (volumeBlocks < 0) {
            throw new IllegalArgumentException("volume block count must not be negative, got " + volumeBlocks);
        }
        if (epochMillis <= 0) {
            throw new IllegalArgumentException("epoch length must be positive, got " + epochMillis + " ms");
        }
        this.objectId = objectId;
        this.blockSize = blockSize;
        this.volumeBlocks = volumeBlocks;
        this.epochMillis = epochMillis;
    }

    public TrackingLog(UUID volumeUuid, int blockSize, long volumeBlocks) {
        this(volumeUuid, 0, blockSize, volumeBlocks, DEFAULT_EPOCH_MILLIS);
    }

    public UUID volumeUuid() {
        return volumeUuid;
    }

    public int objectId() {
        return objectId;
    }

    public int blockSize() {
        return blockSize;
    }

    public synchronized long volumeBlocks() {
        return volumeBlocks;
    }

    /** The volume grew (a write extended the object): marks up to the new end are accepted. */
    public synchronized void growVolume(long newVolumeBlocks) {
        if (newVolumeBlocks < volumeBlocks) {
            throw new IllegalArgumentException("the tracking log cannot shrink a volume from " + volumeBlocks
                    + " to " + newVolumeBlocks + " blocks");
        }
        volumeBlocks = newVolumeBlocks;
    }

    public long epochMillis() {
        return epochMillis;
    }

    public synchronized long coveredTag() {
        return coveredTag;
    }

    public synchronized void setCoveredTag(long tag) {
        this.coveredTag = tag;
    }

    /** The sequence number of the record this log was decoded from; 0 for a log never persisted. */
    public synchronized long sequence() {
        return sequence;
    }

    synchronized void setSequence(long seq) {
        this.sequence = seq;
    }

    public synchronized int maxEpochs() {
        return maxEpochs;
    }

    /**
     * Bounds the number of epochs: when a new epoch would exceed it, the two adjacent closed
     * epochs whose merged time span is smallest are merged (ties: the older pair), so time
     * resolution degrades evenly instead of dropping the oldest history. The merged epoch keeps
     * the higher id, so {@link #clearThrough} with an id taken before the merge leaves it alone
     * (its blocks stay dirty: safe, at worst copied once more). The current epoch is never merged.
     */
    public synchronized void setMaxEpochs(int maxEpochs) {
        if (maxEpochs < 2) {
            throw new IllegalArgumentException("a tracking log needs at least 2 epochs, got " + maxEpochs);
        }
        this.maxEpochs = maxEpochs;
        compact();
    }

    private void compact() {
        while (epochs.size() > maxEpochs) {
            int mergeable = sealed ? epochs.size() : epochs.size() - 1; // epochs [0, mergeable) are closed
            int best = -1;
            long bestSpan = Long.MAX_VALUE;
            for (int i = 0; i + 1 < mergeable; i++) {
                Epoch a = epochs.get(i), b = epochs.get(i + 1);
                long span = Math.max(a.endMillis, b.endMillis) - Math.min(a.startMillis, b.startMillis);
                if (span < bestSpan) {
                    bestSpan = span;
                    best = i;
                }
            }
            if (best < 0) {
                return;
            }
            Epoch a = epochs.get(best), b = epochs.get(best + 1);
            b.blocks.or(a.blocks);
            b.blocks.runOptimize();
            b.startMillis = Math.min(a.startMillis, b.startMillis);
            b.endMillis = Math.max(a.endMillis, b.endMillis);
            epochs.remove(best);
        }
    }

    /** One clear line if {@code start + count} is not inside the volume, else null. */
    public synchronized String checkRange(long start, long count) {
        if (start < 0 || count < 0 || start > volumeBlocks - count) {
            return "blocks " + start + "+" + count + " are outside the volume (" + volumeBlocks + " blocks of "
                    + blockSize + " bytes)";
        }
        return null;
    }

    /**
     * Records that blocks {@code [start, start+count)} were written at {@code timeMillis}.
     *
     * @throws IllegalArgumentException if the range is outside the volume (nothing is recorded)
     */
    public synchronized void mark(long start, long count, long timeMillis) {
        String bad = checkRange(start, count);
        if (bad != null) {
            throw new IllegalArgumentException(bad);
        }
        if (count == 0) {
            return;
        }
        Epoch cur = epochs.isEmpty() ? null : epochs.get(epochs.size() - 1);
        if (cur == null || sealed || timeMillis - cur.startMillis >= epochMillis) {
            cur = new Epoch(nextEpochId++, timeMillis, timeMillis, new Roaring64NavigableMap());
            epochs.add(cur);
            sealed = false;
            compact();
        } else {
            // a write stamped slightly earlier (another thread, clock step) stays in the current epoch
            cur.startMillis = Math.min(cur.startMillis, timeMillis);
            cur.endMillis = Math.max(cur.endMillis, timeMillis);
        }
        cur.blocks.addRange(start, start + count);
    }

    /**
     * Closes the current epoch: the next mark opens a new one. Returns the id of the newest
     * epoch now closed (0 if the log is empty). Resync uses it with {@link #clearThrough}: it rolls,
     * copies the blocks of the epochs up to the returned id, then clears only those epochs, so
     * writes that arrive during the copy stay dirty.
     */
    public synchronized int rollEpoch() {
        sealed = true;
        return epochs.isEmpty() ? 0 : epochs.get(epochs.size() - 1).id;
    }

    /** Removes blocks {@code [start, start+count)} from every epoch and drops epochs left empty. */
    public synchronized void clear(long start, long count) {
        clearThrough(start, count, Integer.MAX_VALUE);
    }

    /**
     * Removes blocks {@code [start, start+count)} from the epochs whose id is at most
     * {@code maxEpochId}, and drops epochs left empty. Newer epochs keep these blocks.
     */
    public synchronized void clearThrough(long start, long count, int maxEpochId) {
        if (count <= 0 || start < 0) {
            return;
        }
        Roaring64NavigableMap gone = new Roaring64NavigableMap();
        gone.addRange(start, start + count);
        for (int i = epochs.size() - 1; i >= 0; i--) {
            Epoch e = epochs.get(i);
            if (e.id > maxEpochId) {
                continue;
            }
            e.blocks.andNot(gone);
            if (e.blocks.isEmpty()) {
                epochs.remove(i);
            }
        }
    }

    /** Removes everything (a full resync completed). Epoch ids keep increasing. */
    public synchronized void clearAll() {
        epochs.clear();
    }

    public synchronized boolean isEmpty() {
        return epochs.isEmpty();
    }

    /** The union of all epochs, as a new bitmap. */
    public synchronized Roaring64NavigableMap dirty() {
        Roaring64NavigableMap all = new Roaring64NavigableMap();
        for (Epoch e : epochs) {
            all.or(e.blocks);
        }
        return all;
    }

    /** Number of distinct dirty blocks. */
    public synchronized long dirtyCount() {
        if (epochs.size() == 1) {
            return epochs.get(0).blocks.getLongCardinality();
        }
        return dirty().getLongCardinality();
    }

    public synchronized boolean isDirty(long block) {
        for (Epoch e : epochs) {
            if (e.blocks.contains(block)) {
                return true;
            }
        }
        return false;
    }

    public synchronized List<EpochInfo> epochs() {
        List<EpochInfo> out = new ArrayList<>(epochs.size());
        for (Epoch e : epochs) {
            out.add(new EpochInfo(e.id, e.startMillis, e.endMillis, e.blocks.getLongCardinality()));
        }
        return out;
    }

    /** A copy of the blocks of epoch {@code id}, or null if there is no such epoch. */
    public synchronized Roaring64NavigableMap epochBlocks(int id) {
        for (Epoch e : epochs) {
            if (e.id == id) {
                Roaring64NavigableMap copy = new Roaring64NavigableMap();
                copy.or(e.blocks);
                return copy;
            }
        }
        return null;
    }

    /** The library's estimate of the bitmaps' heap size, in bytes. */
    public synchronized long sizeInBytes() {
        long n = 0;
        for (Epoch e : epochs) {
            n += e.blocks.getLongSizeInBytes();
        }
        return n;
    }

    /** Converts bitmap containers to run containers where smaller (after large range marks). */
    public synchronized void optimize() {
        for (Epoch e : epochs) {
            e.blocks.runOptimize();
            e.blocks.trim();
        }
    }

    /** Direct access for the format and the tracker; caller holds this log's lock. */
    List<Epoch> epochList() {
        return epochs;
    }

    /** Used by the decoder: appends an epoch read from a record. */
    synchronized void addDecodedEpoch(int id, long startMillis, long endMillis, Roaring64NavigableMap blocks) {
        epochs.add(new Epoch(id, startMillis, endMillis, blocks));
        nextEpochId = Math.max(nextEpochId, id + 1);
        sealed = true; // a reloaded log starts a fresh epoch on its next mark
    }

    /**
     * The dirty ranges written during {@code [sinceMillis, untilMillis]} (both inclusive): the
     * blocks of every epoch whose time span {@code [startMillis, endMillis]} overlaps the
     * interval. Sorted by block, non-overlapping.
     *
     * <p>Coalescing rule: a block's time bounds are the earliest {@code startMillis} and latest
     * {@code endMillis} among the contributing epochs that contain it; adjacent blocks are merged
     * into one range exactly when their time bounds are identical. So a range written in one epoch
     * and partly rewritten in a later one comes back as two or three ranges.
     *
     * <p>Time information is per epoch: a block in an epoch that overlaps the interval is
     * reported even if its own write fell just outside it (at most one epoch length early or late).
     */
    public synchronized List<DirtyRange> query(long sinceMillis, long untilMillis) {
        List<Epoch> chosen = new ArrayList<>();
        for (Epoch e : epochs) {
            if (e.startMillis <= untilMillis && e.endMillis >= sinceMillis) {
                chosen.add(e);
            }
        }
        return sweep(chosen, false);
    }

    /**
     * All dirty blocks as sorted ranges merged by adjacency alone (what resync copies); each
     * range's times are the min start / max end over the epochs holding any of its blocks.
     */
    public synchronized List<DirtyRange> dirtyRanges() {
        return sweep(epochs, true);
    }

    /** Runs of one bitmap, as {start, endExclusive} pairs in ascending order. */
    static List<long[]> runs(Roaring64NavigableMap bm) {
        List<long[]> out = new ArrayList<>();
        LongIterator it = bm.getLongIterator();
        long s = -1, e = -1;
        while (it.hasNext()) {
            long v = it.next();
            if (s >= 0 && v == e) {
                e++;
            } else {
                if (s >= 0) {
                    out.add(new long[] {s, e});
                }
                s = v;
                e = v + 1;
            }
        }
        if (s >= 0) {
            out.add(new long[] {s, e});
        }
        return out;
    }

    private static List<DirtyRange> sweep(List<Epoch> chosen, boolean mergeAdjacent) {
        if (chosen.isEmpty()) {
            return Collections.emptyList();
        }
        if (chosen.size() == 1) {
            Epoch e = chosen.get(0);
            List<DirtyRange> out = new ArrayList<>();
            for (long[] r : runs(e.blocks)) {
                out.add(new DirtyRange(r[0], r[1] - r[0], e.startMillis, e.endMillis));
            }
            return out;
        }
        // events: {position, +1/-1, epoch index}; an epoch's runs never overlap each other
        List<long[]> events = new ArrayList<>();
        for (int i = 0; i < chosen.size(); i++) {
            for (long[] r : runs(chosen.get(i).blocks)) {
                events.add(new long[] {r[0], 1, i});
                events.add(new long[] {r[1], -1, i});
            }
        }
        events.sort((a, b) -> Long.compare(a[0], b[0]));
        TreeMap<Long, Integer> starts = new TreeMap<>();
        TreeMap<Long, Integer> ends = new TreeMap<>();
        int active = 0;
        List<DirtyRange> out = new ArrayList<>();
        long segStart = 0;
        int k = 0;
        while (k < events.size()) {
            long pos = events.get(k)[0];
            if (active > 0 && pos > segStart) {
                emit(out, segStart, pos, starts.firstKey(), ends.lastKey(), mergeAdjacent);
            }
            while (k < events.size() && events.get(k)[0] == pos) {
                Epoch e = chosen.get((int) events.get(k)[2]);
                if (events.get(k)[1] > 0) {
                    starts.merge(e.startMillis, 1, Integer::sum);
                    ends.merge(e.endMillis, 1, Integer::sum);
                    active++;
                } else {
                    starts.computeIfPresent(e.startMillis, (t, c) -> c == 1 ? null : c - 1);
                    ends.computeIfPresent(e.endMillis, (t, c) -> c == 1 ? null : c - 1);
                    active--;
                }
                k++;
            }
            segStart = pos;
        }
        return out;
    }

    private static void emit(List<DirtyRange> out, long start, long end, long first, long last, boolean mergeAdjacent) {
        if (!out.isEmpty()) {
            DirtyRange p = out.get(out.size() - 1);
            if (p.endBlock() == start && (mergeAdjacent || (p.firstMillis() == first && p.lastMillis() == last))) {
                out.set(out.size() - 1, new DirtyRange(p.startBlock(), end - p.startBlock(),
                        Math.min(p.firstMillis(), first), Math.max(p.lastMillis(), last)));
                return;
            }
        }
        out.add(new DirtyRange(start, end - start, first, last));
    }

    @Override
    public synchronized String toString() {
        return "TrackingLog[volume " + volumeUuid + ", " + epochs.size() + " epochs, " + dirtyCount() + " dirty blocks of "
                + blockSize + " bytes, coveredTag " + coveredTag + "]";
    }
}
