package org.ublkmirror.leg;

import org.ublkmirror.sys.LibC;
import org.ublkmirror.sys.PositionalIO;

import java.io.EOFException;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Path;

/** pread/pwrite of direct buffers on plain descriptors, for {@link FileStore}. */
final class RawIO {
    private RawIO() {
    }

    private static final boolean ARM64 = "aarch64".equals(System.getProperty("os.arch"));
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
        int want = dst.remaining();
        int e = PositionalIO.preadAll(fd, dst, pos);
        if (e == PositionalIO.NO_PROGRESS) {
            throw new EOFException("unexpected end of " + path + " at " + (pos + want - dst.remaining()));
        }
        if (e != 0) {
            throw new IOException("read of " + want + " bytes at " + pos + " from " + path + " failed: " + LibC.get().strerror(e));
        }
    }

    static void pwriteFully(int fd, ByteBuffer src, long pos, Path path) throws IOException {
        int want = src.remaining();
        int e = PositionalIO.pwriteAll(fd, src, pos);
        if (e != 0) {
            throw new IOException("write of " + want + " bytes at " + pos + " to " + path + " failed: "
                    + (e == PositionalIO.NO_PROGRESS ? "the file took no bytes" : LibC.get().strerror(e)));
        }
    }
}
