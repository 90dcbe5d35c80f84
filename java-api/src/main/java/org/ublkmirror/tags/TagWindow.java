package org.ublkmirror.tags;

import java.util.TreeSet;

/**
 * The tags a host has issued and not yet retired. A tag is retired when its write is on both
 * legs, or on the primary and in a persisted tracking log. The watermark (every tag up to it is
 * retired) is what journal blocks carry; everything above it is live after a crash.
 */
public final class TagWindow {
    private final int hostId;
    private long lastSeq;
    private final TreeSet<Long> outstanding = new TreeSet<>();

    public TagWindow(int hostId, long lastSeq) {
        this.hostId = hostId;
        this.lastSeq = lastSeq;
    }

    public int hostId() {
        return hostId;
    }

    /** A new tag, outstanding until {@link #retire}. */
    public synchronized long issue() {
        long t = Tag.of(hostId, ++lastSeq);
        outstanding.add(t);
        return t;
    }

    public synchronized void retire(long tag) {
        outstanding.remove(tag);
        notifyAll();
    }

    /** Every tag of this host up to the returned one is retired. */
    public synchronized long watermark() {
        return outstanding.isEmpty() ? Tag.of(hostId, lastSeq) : outstanding.first() - 1;
    }

    public synchronized int outstandingCount() {
        return outstanding.size();
    }

    /** The oldest outstanding tag, or 0 (diagnostics). */
    public synchronized long oldestOutstanding() {
        return outstanding.isEmpty() ? 0 : outstanding.first();
    }

    public synchronized long lastIssued() {
        return Tag.of(hostId, lastSeq);
    }

    /** Waits until the watermark reaches {@code tag} or the timeout passes; true if it did. */
    public synchronized boolean awaitWatermark(long tag, long timeoutMillis) throws InterruptedException {
        long end = System.currentTimeMillis() + timeoutMillis;
        while (watermark() < tag) {
            long left = end - System.currentTimeMillis();
            if (left <= 0) return false;
            wait(left);
        }
        return true;
    }
}
