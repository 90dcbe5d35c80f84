package org.ublkmirror.resync;

import org.ublkmirror.leg.BlockIO;
import org.ublkmirror.leg.FileStore;
import org.ublkmirror.leg.Store;
import org.ublkmirror.leg.StoreBlockIO;
import org.ublkmirror.sys.NativeLoops;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.concurrent.atomic.AtomicLong;

/**
 * How one resync copy moves its blocks primary to secondary. {@link Resync} calls it under the
 * extent's range lock and reports the copy after it returns, whichever it is; the secondary's
 * flush at each checkpoint covers both kinds (same file, same page cache).
 *
 * <p>{@link #of} picks the native in-kernel copy (issue #4 part 1, measured in
 * bench/NativeLoopsBench) when both legs are regular local files and libublkmirror.so with the
 * resync loops is present; otherwise, for plain leg windows, {@link #transfer}: the secondary's store takes the bytes
 * from the primary's itself where it can ({@link Store#transferFrom}: a local file sent to the
 * gateway with sendfile), else the Java read-then-write through the slot's buffer.
 */
public interface Copier {

    /** Copies blocks {@code c} primary to secondary; {@code buf} is the slot's direct buffer (at least one copy). */
    default void copy(BlockIO primary, BlockIO secondary, Extent c, ByteBuffer buf) throws IOException {
        copy(primary, secondary, c, buf, new AtomicLong(), new AtomicLong());
    }

    /**
     * As {@link #copy(BlockIO, BlockIO, Extent, ByteBuffer)}, adding the nanoseconds spent reading
     * the primary and writing the secondary (an in-kernel copy counts all of it as writing).
     */
    void copy(BlockIO primary, BlockIO secondary, Extent c, ByteBuffer buf, AtomicLong readNanos, AtomicLong writeNanos)
            throws IOException;

    /** True for the native path (tests, status). */
    default boolean isNative() {
        return false;
    }

    /** Read the primary into the buffer, write the secondary. */
    Copier JAVA = (primary, secondary, c, buf, readNanos, writeNanos) -> {
        int bytes = (int) (c.count() * primary.blockSize());
        buf.clear().limit(bytes);
        long t0 = System.nanoTime();
        primary.read(c.start(), buf);
        long t1 = System.nanoTime();
        buf.flip();
        secondary.write(c.start(), buf, false);
        readNanos.addAndGet(t1 - t0);
        writeNanos.addAndGet(System.nanoTime() - t1);
    };

    /**
     * {@link Store#transferFrom} between the legs' stores while the secondary's store takes the
     * primary's bytes itself (once it answers that it cannot, it is not asked again by this
     * copier), else {@link #JAVA}.
     */
    private static Copier transfer(StoreBlockIO p, StoreBlockIO s) {
        return new Copier() {
            private volatile boolean refused;

            @Override
            public void copy(BlockIO primary, BlockIO secondary, Extent c, ByteBuffer buf, AtomicLong readNanos,
                             AtomicLong writeNanos) throws IOException {
                if (!refused) {
                    BlockIO.checkRange(p, c.start(), c.count());
                    BlockIO.checkRange(s, c.start(), c.count());
                    long bs = p.blockSize();
                    long t0 = System.nanoTime();
                    if (s.store().transferFrom(s.offset() + c.start() * bs, p.store(), p.offset() + c.start() * bs,
                            Math.toIntExact(c.count() * bs))) {
                        writeNanos.addAndGet(System.nanoTime() - t0);
                        return;
                    }
                    refused = true;
                }
                JAVA.copy(primary, secondary, c, buf, readNanos, writeNanos);
            }
        };
    }

    /** The native copy when both legs are local files and the library loads, else {@link #transfer} or {@link #JAVA}. */
    static Copier of(BlockIO primary, BlockIO secondary) {
        return of(primary, secondary, NativeLoops.load());
    }

    /** As {@link #of(BlockIO, BlockIO)} with the library given ({@code null}: absent). */
    static Copier of(BlockIO primary, BlockIO secondary, NativeLoops nl) {
        // both paths below address the legs' stores directly: plain windows of one block size only
        if (!(primary instanceof StoreBlockIO p) || !(secondary instanceof StoreBlockIO s)
                || primary.getClass() != StoreBlockIO.class || secondary.getClass() != StoreBlockIO.class
                || p.blockSize() != s.blockSize()) {
            return JAVA;
        }
        if (nl == null || !(p.store() instanceof FileStore pf) || !(s.store() instanceof FileStore sf)
                || pf.isBlockDevice() || sf.isBlockDevice()) {
            return transfer(p, s);
        }
        return new Copier() {
            @Override
            public void copy(BlockIO primary, BlockIO secondary, Extent c, ByteBuffer buf, AtomicLong readNanos,
                             AtomicLong writeNanos) throws IOException {
                BlockIO.checkRange(p, c.start(), c.count());
                BlockIO.checkRange(s, c.start(), c.count());
                long bs = p.blockSize();
                long t0 = System.nanoTime();
                sf.copyFrom(pf, p.offset() + c.start() * bs, s.offset() + c.start() * bs,
                        Math.toIntExact(c.count() * bs), buf, nl);
                writeNanos.addAndGet(System.nanoTime() - t0);
            }

            @Override
            public boolean isNative() {
                return true;
            }
        };
    }
}
