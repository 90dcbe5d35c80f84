package org.ublkmirror.frontend;

import java.io.IOException;
import java.nio.ByteBuffer;

/**
 * What a frontend (FUSE + loop, ublk) serves: a volume addressed in bytes, as the kernel sends
 * requests. Calls may come from many threads at once; each returns when the request may be
 * acknowledged to the kernel. The mirror engine is one; tests serve a plain store.
 */
public interface BlockTarget {

    long sizeBytes();

    /** Requests are aligned to this (the loop device's sector size is set to it). */
    int blockSize();

    void read(long offset, ByteBuffer dst) throws IOException;

    /** {@code fua}: durable on return (the kernel's REQ_FUA; FUSE has no such flag). */
    void write(long offset, ByteBuffer src, boolean fua) throws IOException;

    /** Everything acknowledged so far is durable on return (FSYNC, REQ_OP_FLUSH). */
    void flush() throws IOException;

    /** Reads return zeroes afterwards (FALLOCATE punch hole, REQ_OP_DISCARD). */
    void discard(long offset, long length) throws IOException;

    /** Reads return zeroes afterwards (REQ_OP_WRITE_ZEROES, FALLOCATE zero range). */
    void writeZeroes(long offset, long length) throws IOException;
}
