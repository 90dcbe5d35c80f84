package org.ublkmirror.frontend;

import org.ublkmirror.leg.WriteSource;

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

    /**
     * The same write with bytes a frontend holds outside Java (a ublk request's registered
     * buffer): a target whose stores can take them from there overrides this; the default
     * writes {@link WriteSource#buffer}.
     */
    default void write(long offset, WriteSource src, boolean fua) throws IOException {
        write(offset, src.buffer(), fua);
    }

    /**
     * Starts that write (without FUA) and returns it in flight, not waiting for any store, or
     * returns null, having done nothing, when it cannot be started so (it would have to wait: an
     * overlapping write is in flight, perhaps one the caller started; or a store cannot take it).
     * Nothing is acknowledged until the returned write is {@link WriteSource.Pending#await awaited},
     * which the caller does exactly once, on the thread that started it; a caller that gets null
     * awaits what it started before it makes a write that may wait. Lets a frontend have the
     * writes of one batch of requests in flight at once (ublk: docs/frontend-ublk.md "Writes of a
     * batch in flight together"). Null by default.
     */
    default WriteSource.Pending startWrite(long offset, WriteSource src) throws IOException {
        return null;
    }

    /** Everything acknowledged so far is durable on return (FSYNC, REQ_OP_FLUSH). */
    void flush() throws IOException;

    /** Reads return zeroes afterwards (FALLOCATE punch hole, REQ_OP_DISCARD). */
    void discard(long offset, long length) throws IOException;

    /** Reads return zeroes afterwards (REQ_OP_WRITE_ZEROES, FALLOCATE zero range). */
    void writeZeroes(long offset, long length) throws IOException;

    /**
     * Where a frontend may serve reads without calling {@link #read}, in the kernel (ublk zero
     * copy): a file whose bytes at {@code offset + x} are this volume's bytes at {@code x}, for
     * {@code x < length}, as {@link #read} would return them at every moment. Null (the default)
     * when reads must come here. The caller owns the descriptor it returns and closes it.
     */
    default DirectRead directRead() throws IOException {
        return null;
    }

    /**
     * Whether a write (without FUA) of {@code length} bytes at {@code offset} would be served now
     * without waiting for a disk or a network: a guess a frontend uses to serve it on the thread
     * that received it instead of handing it to a worker (ublk: docs/frontend-ublk.md "Writes on
     * the queue thread"). False (the default) when unsure; a true that turns out wrong costs
     * that thread one wait, never correctness.
     */
    default boolean writeWouldNotWait(long offset, long length) {
        return false;
    }

    /** See {@link #directRead}: {@code fd} is the caller's own, read-only. */
    record DirectRead(int fd, long offset, long length, String describe) {
    }
}
