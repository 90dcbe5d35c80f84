package org.ublkmirror.fork;

import java.util.ArrayList;
import java.util.List;
import java.util.TreeMap;

/**
 * Exclusive locks on block ranges, granted in arrival order among overlapping requests.
 *
 * <p>This is what keeps two overlapping in-flight writes in the same order on both legs
 * (DESIGN.md section 3): a write holds its range from before its first leg write is issued until
 * both legs have answered, so a later overlapping write, and a resync copy of those blocks,
 * waits. Non-overlapping ranges never wait for each other.
 */
public final class RangeLock {

    /** A held range; close to release. */
    public final class Held implements AutoCloseable {
        final long start;
        final long end; // exclusive
        final long seq;
        private boolean released;

        Held(long start, long end, long seq) {
            this.start = start;
            this.end = end;
            this.seq = seq;
        }

        public long start() {
            return start;
        }

        public long end() {
            return end;
        }

        @Override
        public void close() {
            release(this);
        }
    }

    // held and waiting ranges, by arrival number; a request is granted when no earlier request
    // (held or waiting) overlaps it, which gives FIFO order per block and no starvation
    private final TreeMap<Long, Held> queue = new TreeMap<>();
    private long nextSeq;

    /** Blocks until {@code [start, start+count)} is held. */
    public Held lock(long start, long count) throws InterruptedException {
        Held h;
        synchronized (this) {
            h = new Held(start, start + Math.max(1, count), nextSeq++);
            queue.put(h.seq, h);
            while (blockedByEarlier(h)) {
                try {
                    wait();
                } catch (InterruptedException e) {
                    queue.remove(h.seq);
                    notifyAll();
                    throw e;
                }
            }
        }
        return h;
    }

    /** Takes the range only if nothing overlapping is held or waiting; null otherwise. */
    public synchronized Held tryLock(long start, long count) {
        Held h = new Held(start, start + Math.max(1, count), nextSeq++);
        queue.put(h.seq, h);
        if (blockedByEarlier(h)) {
            queue.remove(h.seq);
            return null;
        }
        return h;
    }

    private boolean blockedByEarlier(Held h) {
        for (Held o : queue.headMap(h.seq, false).values()) {
            if (o.start < h.end && h.start < o.end) {
                return true;
            }
        }
        return false;
    }

    private synchronized void release(Held h) {
        if (h.released) {
            return;
        }
        h.released = true;
        queue.remove(h.seq);
        notifyAll();
    }

    /** Ranges held or waiting now (for status and tests). */
    public synchronized List<long[]> snapshot() {
        List<long[]> out = new ArrayList<>();
        for (Held h : queue.values()) {
            out.add(new long[] {h.start, h.end});
        }
        return out;
    }
}
