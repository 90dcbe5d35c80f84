package org.ublkmirror.leg;

import java.io.Closeable;
import java.io.IOException;
import java.nio.ByteBuffer;

/**
 * The raw medium under a leg: a file, a block device, a remote volume, or memory in tests.
 * Byte-addressed positional I/O; no caching of its own. Like TuplDB's PageArray: a small
 * contract, with behaviours (fault injection, remote access) as implementations or decorators.
 *
 * <p>Durability model: a completed {@link #write} survives a crash of the daemon (it sits at
 * least in the kernel's page cache); it survives power loss only once a later {@link #flush}
 * has completed, or when it was written with {@code fua} (force unit access).
 */
public interface Store extends Closeable {

    /** Size in bytes. */
    long size() throws IOException;

    /** Reads exactly {@code dst.remaining()} bytes at {@code pos}; reading past the end is an error. */
    void read(long pos, ByteBuffer dst) throws IOException;

    /** Writes all of {@code src} at {@code pos}; if {@code fua}, it is durable when this returns. */
    void write(long pos, ByteBuffer src, boolean fua) throws IOException;

    /**
     * Writes all of {@code src} at {@code pos}, as {@link #write(long, ByteBuffer, boolean)} does
     * with its {@link WriteSource#buffer}; a store that can let the source write itself (a file:
     * {@link FileStore}) overrides this and so skips the copy into a Java buffer.
     */
    default void write(long pos, WriteSource src, boolean fua) throws IOException {
        write(pos, src.buffer(), fua);
    }

    /**
     * Starts the same write and returns it in flight ({@link WriteSource#start}), or null, having
     * started nothing, when this store or the source cannot (then call {@link #write(long,
     * WriteSource, boolean)}).
     */
    default WriteSource.Pending startWrite(long pos, WriteSource src, boolean fua) throws IOException {
        return null;
    }

    /**
     * Writes {@code len} bytes of {@code src} at {@code srcPos} to this store at {@code pos}
     * without passing them through a Java buffer, and returns true; or returns false, having
     * written nothing, when this store cannot take bytes from that source (then the caller reads
     * and writes). Not FUA. The resync uses it: a remote store sends a local file's bytes with
     * sendfile(2) ({@code gateway.NbdStore}). The caller keeps the source range from changing
     * until this returns.
     */
    default boolean transferFrom(long pos, Store src, long srcPos, int len) throws IOException {
        return false;
    }

    /** Makes every completed write durable. */
    void flush() throws IOException;

    /** The range reads as zeroes afterwards; the medium may free the space (hole punching). */
    void discard(long pos, long len) throws IOException;

    /**
     * A shared writable memory mapping of {@code [pos, pos+len)}, or null when this store cannot
     * map (remote volumes, test stores). A store into the mapping is in the page cache at once:
     * it survives a crash of the daemon like a completed {@link #write}, at the cost of a memory
     * copy instead of a system call. The tag journal uses it.
     */
    default java.nio.MappedByteBuffer map(long pos, long len) throws IOException {
        return null;
    }

    /**
     * True when a write takes long enough (a network round trip) that the forker should issue it
     * on its own thread, concurrently with the other leg's. Local stores answer false: a thread
     * handoff costs more than the page-cache copy it would overlap.
     */
    default boolean slow() {
        return false;
    }

    /**
     * False once the store is known broken for good (a remote connection that failed: it is never
     * re-established in place); whoever holds it opens a new one. Local stores are always healthy.
     */
    default boolean healthy() {
        return true;
    }

    /** A short human description: a path, a URL. */
    String describe();
}
