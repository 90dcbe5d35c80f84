package org.ublkmirror.leg;

import java.io.IOException;
import java.nio.ByteBuffer;

/**
 * The bytes of one write when they need not pass through a Java buffer: a ublk request whose
 * pages (zero-copy mode) or tag buffer (copying mode) the shim can write to a file itself, with
 * io_uring WRITE_FIXED (docs/frontend-ublk.md "Leg writes from the request's buffer"). A store
 * that can take such a write ({@link FileStore}) asks {@link #writeTo}; every other store, and a
 * call from another thread, uses {@link #buffer}, so the bytes written are the same either way.
 *
 * <p>Valid only while the request is being served, and only on the thread serving it.
 */
public interface WriteSource {

    /** Bytes to write: a whole number of blocks. */
    int length();

    /**
     * The bytes in a buffer (position 0, limit {@link #length}), fetched on the first call when
     * they are not there yet (ublk zero copy: a copy out of the request). Each call returns a
     * fresh view of the same bytes.
     */
    ByteBuffer buffer() throws IOException;

    /**
     * Writes all {@link #length} bytes to {@code fd} at byte {@code pos} without copying them
     * through Java, and returns true; or returns false, having written nothing, when it cannot
     * here (another thread, no fixed buffers): then the caller writes {@link #buffer()}.
     */
    boolean writeTo(int fd, long pos) throws IOException;

    /**
     * Starts writing all {@link #length} bytes to {@code fd} at {@code pos} and returns the write
     * to wait for, or null, having started nothing, when it cannot here (then the caller uses
     * {@link #writeTo} or {@link #buffer}). Lets two legs' writes be in flight at once; every
     * started write must be waited for before the request it belongs to completes.
     */
    default Pending start(int fd, long pos) throws IOException {
        return null;
    }

    /**
     * Copies all {@link #length} bytes into memory at {@code address} with the copy made by the
     * kernel, and returns true; or returns false when it cannot, or when the copy came up short
     * (then the bytes there are undefined and the caller writes {@link #buffer()} instead). For a
     * store that maps its file ({@link FileStore} on a memory file system): ublk zero copy reads
     * the request's pages through /dev/ublkcN straight into the mapping, one copy. The kernel takes
     * any fault of the destination (a file cut under the mapping, a full tmpfs): the copy fails
     * with EFAULT, where a copy made in Java would raise SIGBUS.
     */
    default boolean copyTo(long address) throws IOException {
        return false;
    }

    /** A write {@link #start started}, in flight. */
    interface Pending {
        /** Returns once all bytes are written, or throws. Call exactly once. */
        void await() throws IOException;
    }

    /** A source over a buffer's remaining bytes (tests; stores that only take buffers). */
    static WriteSource of(ByteBuffer src) {
        ByteBuffer view = src.slice();
        return new WriteSource() {
            @Override
            public int length() {
                return view.remaining();
            }

            @Override
            public ByteBuffer buffer() {
                return view.duplicate();
            }

            @Override
            public boolean writeTo(int fd, long pos) {
                return false;
            }
        };
    }
}
