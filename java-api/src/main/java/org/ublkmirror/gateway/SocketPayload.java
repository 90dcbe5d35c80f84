package org.ublkmirror.gateway;

import org.ublkmirror.leg.WriteSource;
import org.ublkmirror.sys.Splice;

import java.io.IOException;
import java.nio.ByteBuffer;

/**
 * A WRITE's payload still in the socket, offered to the export's store as a {@link WriteSource}:
 * a file store lets it write itself ({@link #writeTo}: what the read-ahead already holds by
 * pwrite, the rest spliced from the socket into the file, one copy of each byte and none through
 * Java); any other store gets the bytes read into a pooled buffer ({@link #buffer}).
 *
 * <p>Used on the connection's reader thread only, one request at a time. After the store's write
 * returns or throws, {@link #finish} reads whatever the payload still owes the wire (a store that
 * refused the write before taking any byte, a file-side error part way), so the next request
 * header is where the reader looks for it; a socket-side failure is rethrown there, and the
 * connection ends.
 */
final class SocketPayload implements WriteSource {
    private final WireIn wire;
    private final int sock;
    private final Splice splice;
    private final PayloadPool pool;
    private final int length;
    /** Bytes of the payload taken off the wire (by any path). */
    private int consumed;
    private ByteBuffer buffered;
    private IOException socketError;
    private boolean spliced;

    SocketPayload(WireIn wire, int sock, Splice splice, PayloadPool pool, int length) {
        this.wire = wire;
        this.sock = sock;
        this.splice = splice;
        this.pool = pool;
        this.length = length;
    }

    @Override
    public int length() {
        return length;
    }

    @Override
    public ByteBuffer buffer() throws IOException {
        if (buffered == null) {
            if (consumed != 0) throw new IllegalStateException("payload already partly written");
            ByteBuffer b = pool.take(length);
            try {
                wire.readFully(b);
            } catch (IOException e) {
                pool.give(b);
                socketError = e;
                throw e;
            }
            b.flip();
            buffered = b;
            consumed = length;
        }
        return buffered.duplicate();
    }

    @Override
    public boolean writeTo(int fd, long pos) throws IOException {
        if (consumed != 0) return false; // already read into the buffer: the caller writes that
        ByteBuffer head = wire.takeBuffered(length);
        int h = head.remaining();
        consumed = h;
        String fileError = null;
        try {
            splice.bufferToFile(head, fd, pos);
        } catch (Splice.FileSideException e) {
            fileError = e.getMessage();
        }
        if (fileError != null) throw new IOException(fileError); // finish() reads the rest off the wire
        try {
            splice.socketToFile(sock, fd, pos + h, length - h);
            consumed = length;
            spliced = true;
        } catch (Splice.FileSideException e) {
            consumed = length; // the rest was read and discarded
            throw e;
        } catch (IOException e) {
            socketError = e;
            throw e;
        } catch (RuntimeException e) {
            // an unknown part of the payload may have left the socket: the stream cannot be trusted
            socketError = new IOException("splice failed: " + e, e);
            throw socketError;
        }
        return true;
    }

    /** True when the payload went into the file by {@link #writeTo}, not through a buffer. */
    boolean spliced() {
        return spliced;
    }

    /** True once the socket failed under this payload: the connection cannot go on. */
    boolean socketFailed() {
        return socketError != null;
    }

    /**
     * Consumes what the wire still holds of this payload and returns the pooled buffer, if any;
     * throws if the socket failed (now or during the write).
     */
    void finish() throws IOException {
        try {
            if (socketError != null) throw socketError;
            if (consumed < length) {
                ByteBuffer scratch = pool.take(length - consumed);
                try {
                    wire.readFully(scratch);
                } finally {
                    pool.give(scratch);
                }
                consumed = length;
            }
        } finally {
            if (buffered != null) {
                pool.give(buffered);
                buffered = null;
            }
        }
    }
}
