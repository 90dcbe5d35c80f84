package org.ublkmirror.sys;

import com.kenai.jffi.MemoryIO;

import java.nio.ByteBuffer;

/**
 * pread(2)/pwrite(2) loops on plain descriptors from and into direct buffers, for the callers that
 * hold a descriptor rather than a FileChannel: {@code leg.RawIO} (FileStore's own descriptors) and
 * {@link Splice} (a spliced payload's head). They report errno instead of throwing, so each caller
 * words its own failure (a store names its file; the gateway tells a file-side error from a
 * socket-side one).
 */
public final class PositionalIO {
    private PositionalIO() {
    }

    private static final boolean ARM64 = "aarch64".equals(System.getProperty("os.arch"));
    private static final long SYS_PREAD64 = ARM64 ? 67 : 17, SYS_PWRITE64 = ARM64 ? 68 : 18;
    /** What {@link #pwriteAll} returns when the file took no bytes, {@link #preadAll} at end of file. */
    public static final int NO_PROGRESS = -1;

    /**
     * Writes all of {@code src}'s remaining bytes at {@code pos}, advancing its position; returns 0,
     * the errno of the call that failed, or {@link #NO_PROGRESS} when a call wrote nothing. EINTR and
     * EAGAIN are retried.
     */
    public static int pwriteAll(int fd, ByteBuffer src, long pos) {
        return loop(SYS_PWRITE64, fd, src, pos);
    }

    /**
     * Reads until {@code dst} is full, advancing its position; returns 0, the errno of the call that
     * failed, or {@link #NO_PROGRESS} at end of file.
     */
    public static int preadAll(int fd, ByteBuffer dst, long pos) {
        return loop(SYS_PREAD64, fd, dst, pos);
    }

    private static int loop(long sys, int fd, ByteBuffer b, long pos) {
        LibC c = LibC.get();
        long base = MemoryIO.getInstance().getDirectBufferAddress(b);
        while (b.hasRemaining()) {
            long n = c.syscall(sys, fd, base + b.position(), b.remaining(), pos, 0, 0);
            if (n < 0) {
                int e = LibC.errno();
                if (e == LibC.EINTR || e == LibC.EAGAIN) continue;
                return e;
            }
            if (n == 0) return NO_PROGRESS;
            b.position(b.position() + (int) n);
            pos += n;
        }
        return 0;
    }
}
