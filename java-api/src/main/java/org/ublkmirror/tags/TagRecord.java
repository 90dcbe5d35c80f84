package org.ublkmirror.tags;

/** One tag table entry: the write with this tag targets these blocks of this storage object. */
public record TagRecord(long tag, int objectId, long startBlock, long blockCount) {
}
