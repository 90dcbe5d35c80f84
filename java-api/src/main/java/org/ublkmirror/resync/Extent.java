package org.ublkmirror.resync;

/** A run of {@code count} consecutive blocks starting at block {@code start}. */
public record Extent(long start, long count) {

    public Extent {
        if (start < 0 || count <= 0 || start > Long.MAX_VALUE - count) {
            throw new IllegalArgumentException("extent " + start + "+" + count
                    + " is invalid: start must be >= 0 and count > 0");
        }
    }

    /** The first block after this extent. */
    public long end() {
        return start + count;
    }

    public boolean contains(long block) {
        return block >= start && block < end();
    }

    @Override
    public String toString() {
        return start + "+" + count;
    }
}
