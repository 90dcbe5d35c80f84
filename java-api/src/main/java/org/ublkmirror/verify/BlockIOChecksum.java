package org.ublkmirror.verify;

import org.ublkmirror.leg.BlockIO;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.zip.CRC32;
import java.util.zip.CRC32C;

/**
 * Reads a region and hashes it: CRC32C in the high 32 bits, CRC32 (IEEE) in the low 32 bits.
 *
 * <p>Why two CRCs: both are JIT intrinsics (SSE4.2 / PCLMULQDQ on x86, CRC instructions on
 * ARMv8), so hashing runs at several GB/s and the disk, not the CPU, bounds verify. One CRC32
 * alone gives a 2^-32 chance that a differing region goes unnoticed, too high over millions of
 * regions; the two polynomials are independent, so combined the chance for a random difference
 * is about 2^-64, and every difference confined to a 32-bit burst is detected with certainty.
 * This is a check against accidental divergence, not against an adversary (no cryptographic
 * hash is needed, and one would cost 5-10x the CPU).
 */
final class BlockIOChecksum implements RegionChecksum {
    static final int DEFAULT_BUFFER_BYTES = 1 << 20;

    private final BlockIO io;
    private final ByteBuffer buf;
    private final long bufBlocks;
    private long bytesRead;

    BlockIOChecksum(BlockIO io, int bufferBytes) {
        this.io = io;
        int bs = io.blockSize();
        this.bufBlocks = Math.max(1, bufferBytes / bs);
        this.buf = ByteBuffer.allocateDirect((int) (bufBlocks * bs));
    }

    @Override
    public synchronized long checksum(long startBlock, long blockCount) throws IOException {
        BlockIO.checkRange(io, startBlock, blockCount);
        CRC32C c1 = new CRC32C();
        CRC32 c2 = new CRC32();
        int bs = io.blockSize();
        for (long b = startBlock; b < startBlock + blockCount; b += bufBlocks) {
            long n = Math.min(bufBlocks, startBlock + blockCount - b);
            buf.clear().limit((int) (n * bs));
            io.read(b, buf);
            buf.flip();
            c1.update(buf);
            buf.flip();
            c2.update(buf);
            bytesRead += n * bs;
        }
        return (c1.getValue() << 32) | c2.getValue();
    }

    @Override
    public synchronized long bytesRead() {
        return bytesRead;
    }
}
