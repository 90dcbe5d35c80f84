package org.ublkmirror.tags;

/**
 * The tags a host has issued and not yet retired. A tag is retired when its write is on both
 * legs, or on the primary and in a persisted tracking log. The watermark (every tag up to it is
 * retired) is what journal blocks carry; everything above it is live after a crash.
 *
 * <p>Kept as a ring of bits over sequence numbers, one bit per tag from the oldest outstanding
 * one ({@code low}) to the last issued one: issue and retire are a bit flip, no allocation on the
 * write path. The ring doubles when the outstanding span outgrows it (tracked writes stay
 * outstanding until the tracking log is persisted).
 */
public final class TagWindow {
    private static final int INITIAL_BITS = 1024;

    private final int hostId;
    private long lastSeq;
    /** Every sequence below this one is retired; it is the oldest outstanding one when {@code count > 0}. */
    private long low;
    /** Bit {@code seq & (capacity - 1)}: seq in [low, lastSeq] is outstanding. Capacity is a power of two. */
    private long[] bits = new long[INITIAL_BITS / 64];
    private int count;

    public TagWindow(int hostId, long lastSeq) {
        this.hostId = hostId;
        this.lastSeq = lastSeq;
        this.low = lastSeq + 1;
    }

    public int hostId() {
        return hostId;
    }

    /** A new tag, outstanding until {@link #retire}. */
    public synchronized long issue() {
        long seq = lastSeq + 1;
        long t = Tag.of(hostId, seq);
        if (count == 0) {
            low = seq;
        } else if (seq - low >= capacity()) {
            grow(seq - low + 1);
        }
        lastSeq = seq;
        bits[word(seq)] |= 1L << seq; // shifts use the low 6 bits
        count++;
        return t;
    }

    /** Retires an outstanding tag; a tag that is not outstanding (another host's, or retired) is ignored. */
    public synchronized void retire(long tag) {
        if (Tag.host(tag) != hostId) return;
        long seq = Tag.seq(tag);
        if (seq < low || seq > lastSeq || !isSet(seq)) return;
        bits[word(seq)] &= ~(1L << seq);
        count--;
        if (seq == low) {
            if (count == 0) {
                low = lastSeq + 1;
            } else {
                do {
                    low++;
                } while (!isSet(low)); // stops: an outstanding tag lies in (low, lastSeq]
            }
            notifyAll(); // the watermark moved
        }
    }

    /** Every tag of this host up to the returned one is retired. */
    public synchronized long watermark() {
        return Tag.of(hostId, low - 1);
    }

    public synchronized int outstandingCount() {
        return count;
    }

    /** The oldest outstanding tag, or 0 (diagnostics). */
    public synchronized long oldestOutstanding() {
        return count == 0 ? 0 : Tag.of(hostId, low);
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

    private long capacity() {
        return (long) bits.length * 64;
    }

    private int word(long seq) {
        return (int) ((seq & (capacity() - 1)) >>> 6);
    }

    private boolean isSet(long seq) {
        return (bits[word(seq)] & (1L << seq)) != 0;
    }

    /** Grows the ring to hold at least {@code span} sequences from {@code low} on; the set bits keep their seqs. */
    private void grow(long span) {
        long cap = capacity();
        while (cap < span) cap <<= 1;
        if (cap > (1L << 36)) throw new IllegalStateException("more than " + (1L << 36) + " tags outstanding");
        long[] old = bits;
        long oldMask = capacity() - 1;
        bits = new long[(int) (cap >>> 6)];
        for (long s = low; s <= lastSeq; s++) {
            if ((old[(int) ((s & oldMask) >>> 6)] & (1L << s)) != 0) bits[word(s)] |= 1L << s;
        }
    }
}
