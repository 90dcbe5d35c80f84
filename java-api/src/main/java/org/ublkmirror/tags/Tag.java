package org.ublkmirror.tags;

/**
 * A write's tag: 16 bits of host id, 48 bits of that host's sequence, in one long. Both write
 * transactions of a forked write carry the same tag. Sequences start at 1; 0 means "none".
 */
public final class Tag {
    public static final int HOST_BITS = 16;
    public static final long SEQ_MASK = (1L << 48) - 1;

    private Tag() {
    }

    public static long of(int hostId, long seq) {
        if (hostId < 0 || hostId >= (1 << HOST_BITS)) {
            throw new IllegalArgumentException("host id " + hostId + " is outside 0.." + ((1 << HOST_BITS) - 1));
        }
        return ((long) hostId << 48) | (seq & SEQ_MASK);
    }

    public static int host(long tag) {
        return (int) (tag >>> 48);
    }

    public static long seq(long tag) {
        return tag & SEQ_MASK;
    }

    public static String format(long tag) {
        return host(tag) + ":" + seq(tag);
    }
}
