package org.ublkmirror.leg;

import org.ublkmirror.sys.LibC;

import java.nio.channels.FileChannel;
import java.nio.file.Path;

/** Hole punching through libc fallocate: FileChannel cannot punch holes (notes/fuse-loop.md). */
final class Fallocate {
    private static volatile boolean unavailable;

    private Fallocate() {
    }

    /** Punches a hole; false when this file system or platform cannot, so the caller writes zeroes. */
    static boolean punchHole(Path path, FileChannel ch, long pos, long len) {
        if (unavailable || len == 0) {
            return len == 0;
        }
        try {
            LibC c = LibC.get();
            int fd = c.open(path.toString(), LibC.O_WRONLY | LibC.O_CLOEXEC, 0);
            if (fd < 0) {
                return false;
            }
            try {
                return c.fallocate(fd, LibC.FALLOC_FL_PUNCH_HOLE | LibC.FALLOC_FL_KEEP_SIZE, pos, len) == 0;
            } finally {
                c.close(fd);
            }
        } catch (LinkageError | RuntimeException e) {
            unavailable = true;
            return false;
        }
    }
}
