package org.ublkmirror.gateway;

import java.nio.ByteBuffer;
import java.util.concurrent.ConcurrentLinkedQueue;

/**
 * Direct buffers of {@link #SIZE} for NBD payloads (plain TCP, {@link WireIn}): the gateway's WRITE
 * payloads and READ replies, the client's READ data. A buffer taken is handed back when its bytes
 * are used; at most {@code keep} are kept for reuse, the rest left to the collector.
 */
final class PayloadPool {
    /** Payloads up to this size come from the pool; larger ones take a heap array. */
    static final int SIZE = 1 << 20;
    private final ConcurrentLinkedQueue<ByteBuffer> free = new ConcurrentLinkedQueue<>();
    private final int keep;

    PayloadPool(int keep) {
        this.keep = keep;
    }

    /**
     * A buffer for {@code length} bytes (position 0, limit length): a kept direct one, a new direct
     * one, or, for more than {@link #SIZE} bytes or when the JVM's direct memory is used up, a heap one.
     */
    ByteBuffer take(int length) {
        if (length > SIZE) return ByteBuffer.allocate(length);
        ByteBuffer b = free.poll();
        if (b == null) {
            try {
                b = ByteBuffer.allocateDirect(SIZE);
            } catch (OutOfMemoryError e) {
                return ByteBuffer.allocate(length);
            }
        }
        return b.clear().limit(length);
    }

    /** Back for reuse (a pool-sized direct buffer, while fewer than {@code keep} are kept). */
    void give(ByteBuffer b) {
        if (b.isDirect() && b.capacity() == SIZE && free.size() < keep) free.offer(b);
    }
}
