package org.ublkmirror.verify;

import org.ublkmirror.leg.BlockIO;

import java.io.IOException;

/**
 * A 64-bit checksum of a run of blocks on one leg. Verify compares these first and reads exact
 * blocks only where they differ, so a remote leg can compute it server-side and send 8 bytes per
 * region instead of the region itself.
 *
 * <p>The algorithm of {@link #over(BlockIO)} is part of the wire contract, so a server must
 * compute the same: {@code (CRC32C(data) << 32) | CRC32(data)} over the region's bytes in
 * address order (both as unsigned 32-bit values, java.util.zip semantics).
 */
public interface RegionChecksum {

    long checksum(long startBlock, long blockCount) throws IOException;

    /** Bytes this checksummer read through local I/O so far (0 for one computed elsewhere). */
    default long bytesRead() {
        return 0;
    }

    /** The default: read the blocks and hash them locally. */
    static RegionChecksum over(BlockIO io) {
        return new BlockIOChecksum(io, BlockIOChecksum.DEFAULT_BUFFER_BYTES);
    }
}
