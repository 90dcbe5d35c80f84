package org.ublkmirror.track;

/**
 * A run of dirty blocks and when they were written, at epoch granularity.
 *
 * @param startBlock  first block
 * @param blockCount  number of blocks (at least 1)
 * @param firstMillis the earliest start time of the epochs that hold these blocks
 * @param lastMillis  the latest end time (last write) of the epochs that hold these blocks
 */
public record DirtyRange(long startBlock, long blockCount, long firstMillis, long lastMillis) {

    /** One past the last block. */
    public long endBlock() {
        return startBlock + blockCount;
    }
}
