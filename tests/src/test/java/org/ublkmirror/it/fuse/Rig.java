package org.ublkmirror.it.fuse;

import org.ublkmirror.frontend.fuse.FuseDevice;
import org.ublkmirror.frontend.fuse.FuseFrontend;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * One FUSE + loop device over a sparse file in a fresh temp dir. close() undoes everything,
 * also after a failure halfway: a file system mounted on the device, the device, the temp dir.
 */
final class Rig implements AutoCloseable {
    final Path dir;
    final FileTarget target;
    final FuseDevice dev;
    /** Where a test mounts a file system made on the device. */
    final Path fsMount;

    private Rig(Path dir, FileTarget target, FuseDevice dev) {
        this.dir = dir;
        this.target = target;
        this.dev = dev;
        this.fsMount = dir.resolve("fs");
    }

    static Rig start(long size, FuseFrontend.Options opts) throws IOException {
        Path dir = Files.createTempDirectory(Path.of("/tmp"), "fuse-it-");
        FileTarget t = null;
        try {
            t = FileTarget.create(dir.resolve("backing.img"), size);
            FuseDevice d = FuseFrontend.start(t, dir.resolve("fuse"), opts);
            return new Rig(dir, t, d);
        } catch (IOException | RuntimeException | Error e) {
            if (t != null) {
                t.close();
            }
            Root.deleteTree(dir);
            throw e;
        }
    }

    static Rig start(long size) throws IOException {
        return start(size, FuseFrontend.Options.defaults());
    }

    String device() {
        return dev.device().toString();
    }

    @Override
    public void close() throws IOException {
        try {
            Root.umountQuietly(fsMount);
            dev.close();
        } finally {
            target.close();
            Root.deleteTree(dir);
        }
    }
}
