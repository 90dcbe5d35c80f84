package org.ublkmirror.gateway;

import java.io.EOFException;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.ReadableByteChannel;

/**
 * Buffered reads from a blocking channel (after the handshake: a plain TCP socket's own channel,
 * or, over TLS, a channel on the stream, which reads through its own buffer): request headers come
 * out of a direct read-ahead buffer, and a write's payload goes from that buffer and then straight
 * from the socket into the caller's buffer, with no copy through a Java array. (A stream would read
 * the payload into a temporary direct buffer, copy it into a heap array, and the file write would
 * copy it back into a temporary direct buffer: three passes over every byte where this makes one.)
 */
final class WireIn {
    private final ReadableByteChannel ch;
    private final ByteBuffer buf; // read mode: position..limit are bytes not yet consumed

    /** {@code carried}: bytes already read from the connection (by the handshake's stream) and not consumed. */
    WireIn(ReadableByteChannel ch, byte[] carried) {
        this.ch = ch;
        this.buf = ByteBuffer.allocateDirect(Math.max(64 << 10, carried.length));
        buf.put(carried).flip();
    }

    private void need(int n) throws IOException {
        if (buf.remaining() >= n) return;
        buf.compact();
        try {
            while (buf.position() < n) {
                if (ch.read(buf) < 0) throw new EOFException("the peer closed the connection");
            }
        } finally {
            buf.flip();
        }
    }

    int readInt() throws IOException {
        need(4);
        return buf.getInt();
    }

    int readUnsignedShort() throws IOException {
        need(2);
        return buf.getShort() & 0xffff;
    }

    long readLong() throws IOException {
        need(8);
        return buf.getLong();
    }

    /** Up to {@code max} bytes already read ahead (a view, consumed by this call; maybe empty). */
    ByteBuffer takeBuffered(int max) {
        int take = Math.min(buf.remaining(), max);
        ByteBuffer part = buf.slice(buf.position(), take);
        buf.position(buf.position() + take);
        return part;
    }

    /** Fills {@code dst} (position to limit): what is buffered first, the rest read straight into it. */
    void readFully(ByteBuffer dst) throws IOException {
        int take = Math.min(buf.remaining(), dst.remaining());
        if (take > 0) {
            ByteBuffer part = buf.slice(buf.position(), take);
            dst.put(part);
            buf.position(buf.position() + take);
        }
        while (dst.hasRemaining()) {
            if (ch.read(dst) < 0) throw new EOFException("the peer closed the connection");
        }
    }
}
