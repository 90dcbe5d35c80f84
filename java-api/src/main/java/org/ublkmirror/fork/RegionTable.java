package org.ublkmirror.fork;

import java.util.Arrays;

/**
 * The regions of the {@link IntentLog}, each with its count of writes in flight and the op count
 * at which its last write ended, in least-recently-used order: what a
 * {@code LinkedHashMap<Long, ...>} in access order would give, in primitive arrays (no boxing, no
 * node per entry on the write path).
 *
 * <p>Entries live in slots (parallel arrays); a doubly linked list through {@code prev}/{@code next}
 * keeps the LRU order (head: least recently used), and an open-addressing index (linear probing,
 * backward-shift deletion, no tombstones) maps a region number to its slot. Not thread-safe: the
 * intent log calls it under its own lock.
 */
final class RegionTable {
    private static final int NONE = -1;

    private long[] region;
    private int[] inflight;
    private long[] lastEnd;
    private int[] prev, next; // LRU links; next also chains the free slots
    private int head = NONE, tail = NONE, free = NONE;
    private int used; // slots handed out so far (free ones below it are on the free list)
    private int size;
    /** slot + 1 per bucket, 0 = empty; length a power of two, at least twice the slot capacity. */
    private int[] index;

    RegionTable(int initialCapacity) {
        int cap = Math.max(4, Integer.highestOneBit(Math.max(1, initialCapacity - 1)) << 1);
        region = new long[cap];
        inflight = new int[cap];
        lastEnd = new long[cap];
        prev = new int[cap];
        next = new int[cap];
        index = new int[cap * 2];
    }

    int size() {
        return size;
    }

    /** The slot holding region {@code r}, or -1. */
    int find(long r) {
        int mask = index.length - 1;
        for (int i = bucket(r, mask); ; i = (i + 1) & mask) {
            int e = index[i];
            if (e == 0) return NONE;
            if (region[e - 1] == r) return e - 1;
        }
    }

    /** Adds region {@code r} (not present) as the most recently used, with no write in flight and lastEnd 0. */
    int add(long r) {
        if (free == NONE && used == region.length) grow();
        int s;
        if (free != NONE) {
            s = free;
            free = next[s];
        } else {
            s = used++;
        }
        region[s] = r;
        inflight[s] = 0;
        lastEnd[s] = 0;
        link(s);
        insertIndex(s);
        size++;
        return s;
    }

    /** Makes the slot the most recently used. */
    void touch(int s) {
        if (s == tail) return;
        unlink(s);
        link(s);
    }

    void remove(int s) {
        removeIndex(region[s]);
        unlink(s);
        next[s] = free;
        free = s;
        size--;
    }

    /** The least recently used slot, or -1. */
    int first() {
        return head;
    }

    /** The next slot in LRU order (toward the most recently used), or -1. */
    int next(int s) {
        return next[s];
    }

    long region(int s) {
        return region[s];
    }

    int inflight(int s) {
        return inflight[s];
    }

    void addInflight(int s, int delta) {
        inflight[s] += delta;
    }

    long lastEnd(int s) {
        return lastEnd[s];
    }

    void setLastEnd(int s, long v) {
        lastEnd[s] = v;
    }

    private void link(int s) {
        prev[s] = tail;
        next[s] = NONE;
        if (tail != NONE) next[tail] = s;
        else head = s;
        tail = s;
    }

    private void unlink(int s) {
        int p = prev[s], n = next[s];
        if (p != NONE) next[p] = n;
        else head = n;
        if (n != NONE) prev[n] = p;
        else tail = p;
    }

    private static int bucket(long r, int mask) {
        long h = r * 0x9E3779B97F4A7C15L;
        return (int) (h ^ (h >>> 32)) & mask;
    }

    private void insertIndex(int s) {
        int mask = index.length - 1;
        int i = bucket(region[s], mask);
        while (index[i] != 0) i = (i + 1) & mask;
        index[i] = s + 1;
    }

    private void removeIndex(long r) {
        int mask = index.length - 1;
        int i = bucket(r, mask);
        while (region[index[i] - 1] != r) i = (i + 1) & mask; // present: the caller holds its slot
        index[i] = 0;
        // backward shift: pull later entries of the probe run into the hole when their home allows
        for (int j = (i + 1) & mask; index[j] != 0; j = (j + 1) & mask) {
            int home = bucket(region[index[j] - 1], mask);
            boolean homeInHoleToJ = i <= j ? (home > i && home <= j) : (home > i || home <= j);
            if (!homeInHoleToJ) {
                index[i] = index[j];
                index[j] = 0;
                i = j;
            }
        }
    }

    private void grow() {
        int cap = region.length * 2;
        region = Arrays.copyOf(region, cap);
        inflight = Arrays.copyOf(inflight, cap);
        lastEnd = Arrays.copyOf(lastEnd, cap);
        prev = Arrays.copyOf(prev, cap);
        next = Arrays.copyOf(next, cap);
        index = new int[cap * 2];
        for (int s = head; s != NONE; s = next[s]) insertIndex(s);
    }
}
