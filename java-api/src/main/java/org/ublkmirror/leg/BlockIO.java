package org.ublkmirror.leg;

import java.io.IOException;
import java.nio.ByteBuffer;

/**
 * A volume seen as fixed-size blocks with 64-bit addresses. A {@link Leg}'s data area is one;
 * so is a mirror as a whole. Buffers hold a whole number of blocks.
 */
public interface BlockIO {

    int blockSize();

    long blockCount();

    /** Reads {@code dst.remaining() / blockSize()} blocks starting at {@code block}. */
    void read(long block, ByteBuffer dst) throws IOException;

    /** Writes {@code src.remaining() / blockSize()} blocks starting at {@code block}. */
    void write(long block, ByteBuffer src, boolean fua) throws IOException;

    /** Writes {@code src.length() / blockSize()} blocks starting at {@code block} (see {@link Store#write(long, WriteSource, boolean)}). */
    default void write(long block, WriteSource src, boolean fua) throws IOException {
        write(block, src.buffer(), fua);
    }

    /** Starts that write and returns it in flight, or null, having started nothing ({@link Store#startWrite}). */
    default WriteSource.Pending startWrite(long block, WriteSource src, boolean fua) throws IOException {
        return null;
    }

    void flush() throws IOException;

    /** Discards {@code count} blocks: they read as zeroes afterwards. */
    void discard(long block, long count) throws IOException;

    /** Checks a request against the volume: whole blocks, inside it. Throws with one clear line. */
    static void checkRange(BlockIO io, long block, long count) {
        if (block < 0 || count < 0 || block > io.blockCount() - count) {
            throw new IllegalArgumentException("blocks " + block + "+" + count
                    + " are outside the volume (" + io.blockCount() + " blocks of " + io.blockSize() + " bytes)");
        }
    }

    static long blocksOf(BlockIO io, ByteBuffer buf) {
        return blocksOf(io, buf.remaining());
    }

    /** Blocks in an I/O of {@code bytes}; throws with one clear line when that is not whole blocks. */
    static long blocksOf(BlockIO io, long bytes) {
        int bs = io.blockSize();
        if (bytes % bs != 0) {
            throw new IllegalArgumentException("I/O of " + bytes + " bytes is not a multiple of the block size "
                    + bs + "; align requests to " + bs + " bytes");
        }
        return bytes / bs;
    }
}
