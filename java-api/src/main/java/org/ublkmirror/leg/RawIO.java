package org.ublkmirror.leg;

import com.kenai.jffi.MemoryIO;
import org.ublkmirror.sys.LibC;

import java.io.EOFException;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Path;

/** pread/pwrite of direct buffers on plain descriptors, for {@link FileStore}. */
final class RawIO {
    private RawIO() {
    }

    private static final boolean ARM64 = "aarch64".equals(System.getProperty("os.arch"));
    private static final long SYS_PREAD64 = ARM64 ? 67 : 17, SYS_PWRITE64 = ARM64 ? 68 : 18;
    static final int O_DSYNC = 0x1000, O_CLOEXEC = 0x80000;
    /** On with -Dublkmirror.rawio=true (off by default: no measured gain yet; every call then goes through FileChannel). */
    static final boolean AVAILABLE = available();

    private static boolean available() {
        if (!Boolean.parseBoolean(System.getProperty("ublkmirror.rawio", "false"))) return false;
        String arch = System.getProperty("os.arch");
        if (!("amd64".equals(arch) || "x86_64".equals(arch) || ARM64)) return false;
        try {
            LibC.get();
            return true;
        } catch (Throwable t) {
            return false;
        }
    }

    static int open(Path p, int flags) {
        return LibC.get().open(p.toString(), flags | O_CLOEXEC, 0);
    }

    static void preadFully(int fd, ByteBuffer dst, long pos, Path path) throws IOException {
        LibC c = LibC.get();
        long base = MemoryIO.getInstance().getDirectBufferAddress(dst);
        while (dst.hasRemaining()) {
            long n = c.syscall(SYS_PREAD64, fd, base + dst.position(), dst.remaining(), pos, 0, 0);
            if (n < 0) {
                int e = LibC.errno();
                if (e == LibC.EINTR || e == LibC.EAGAIN) continue;
                throw new IOException("read of " + dst.remaining() + " bytes at " + pos + " from " + path + " failed: " + c.strerror(e));
            }
            if (n == 0) {
                throw new EOFException("unexpected end of " + path + " at " + pos);
            }
            dst.position(dst.position() + (int) n);
            pos += n;
        }
    }

    static void pwriteFully(int fd, ByteBuffer src, long pos, Path path) throws IOException {
        LibC c = LibC.get();
        long base = MemoryIO.getInstance().getDirectBufferAddress(src);
        while (src.hasRemaining()) {
            long n = c.syscall(SYS_PWRITE64, fd, base + src.position(), src.remaining(), pos, 0, 0);
            if (n < 0) {
                int e = LibC.errno();
                if (e == LibC.EINTR || e == LibC.EAGAIN) continue;
                throw new IOException("write of " + src.remaining() + " bytes at " + pos + " to " + path + " failed: " + c.strerror(e));
            }
            src.position(src.position() + (int) n);
            pos += n;
        }
    }
}
