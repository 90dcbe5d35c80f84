package org.ublkmirror.fork;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * Exclusive locks on block ranges, granted in arrival order among overlapping requests.
 *
 * <p>This is what keeps two overlapping in-flight writes in the same order on both legs
 * (DESIGN.md section 3): a write holds its range from before its first leg write is issued until
 * both legs have answered, so a later overlapping write, and a resync copy of those blocks,
 * waits. Non-overlapping ranges never wait for each other.
 *
 * <p>Two forms: {@link #lock} returns a {@link Held} for try-with-resources; {@link #acquire} and
 * {@link #release(long)} do the same with a ticket number and allocate nothing (the forker's
 * per-write path).
 */
public final class RangeLock {

    /** A held range; close to release. */
    public final class Held implements AutoCloseable {
        final long start;
        final long end; // exclusive
        final long seq;

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
            release(seq);
        }
    }

    // held and waiting ranges in arrival order (parallel arrays, sorted by ticket): a request is
    // granted when no earlier request (held or waiting) overlaps it, which gives FIFO order per
    // block and no starvation
    private long[] tickets = new long[64];
    private long[] starts = new long[64];
    private long[] ends = new long[64]; // exclusive
    private int size;
    private long nextSeq;
    private int waiters;

    /** Blocks until {@code [start, start+count)} is held. */
    public Held lock(long start, long count) throws InterruptedException {
        long t = acquire(start, count);
        return new Held(start, start + Math.max(1, count), t);
    }

    /** Blocks until {@code [start, start+count)} is held; returns the ticket to pass to {@link #release(long)}. */
    public synchronized long acquire(long start, long count) throws InterruptedException {
        long end = start + Math.max(1, count);
        long t = add(start, end);
        if (blockedByEarlier(t, start, end)) {
            waiters++;
            try {
                do {
                    wait();
                } while (blockedByEarlier(t, start, end));
            } catch (InterruptedException e) {
                remove(t);
                notifyAll();
                throw e;
            } finally {
                waiters--;
            }
        }
        return t;
    }

    /**
     * Takes the range only if nothing overlapping is held or waiting, without waiting; returns the
     * ticket to pass to {@link #release(long)}, or -1 (nothing taken).
     */
    public synchronized long tryAcquire(long start, long count) {
        long end = start + Math.max(1, count);
        long t = add(start, end);
        if (blockedByEarlier(t, start, end)) {
            remove(t);
            return -1;
        }
        return t;
    }

    /** Takes the range only if nothing overlapping is held or waiting; null otherwise. */
    public synchronized Held tryLock(long start, long count) {
        long t = tryAcquire(start, count);
        return t < 0 ? null : new Held(start, start + Math.max(1, count), t);
    }

    /** Releases a range taken by {@link #acquire}; releasing it again does nothing. */
    public synchronized void release(long ticket) {
        if (remove(ticket) && waiters > 0) {
            notifyAll();
        }
    }

    private long add(long start, long end) {
        if (size == tickets.length) {
            int n = size * 2;
            tickets = Arrays.copyOf(tickets, n);
            starts = Arrays.copyOf(starts, n);
            ends = Arrays.copyOf(ends, n);
        }
        long t = nextSeq++;
        tickets[size] = t; // the largest ticket so far: the arrays stay sorted
        starts[size] = start;
        ends[size] = end;
        size++;
        return t;
    }

    private boolean remove(long ticket) {
        int i = Arrays.binarySearch(tickets, 0, size, ticket);
        if (i < 0) return false;
        int tail = size - i - 1;
        System.arraycopy(tickets, i + 1, tickets, i, tail);
        System.arraycopy(starts, i + 1, starts, i, tail);
        System.arraycopy(ends, i + 1, ends, i, tail);
        size--;
        return true;
    }

    private boolean blockedByEarlier(long ticket, long start, long end) {
        for (int i = 0; i < size && tickets[i] < ticket; i++) {
            if (starts[i] < end && start < ends[i]) {
                return true;
            }
        }
        return false;
    }

    /** Ranges held or waiting now, in arrival order (for status and tests). */
    public synchronized List<long[]> snapshot() {
        List<long[]> out = new ArrayList<>(size);
        for (int i = 0; i < size; i++) {
            out.add(new long[] {starts[i], ends[i]});
        }
        return out;
    }
}
