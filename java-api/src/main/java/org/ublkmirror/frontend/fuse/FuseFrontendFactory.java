package org.ublkmirror.frontend.fuse;

import org.ublkmirror.daemon.Daemon;
import org.ublkmirror.frontend.DeviceLink;
import org.ublkmirror.frontend.Frontend;
import org.ublkmirror.mirror.Mirror;
import org.ublkmirror.mirror.MirrorConfig;
import org.ublkmirror.sys.LibC;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * Plugs FUSE + loop into the daemon: the mirror is served as {@code <run dir>/NAME.fuse/disk},
 * with a loop device on it. A daemon killed with -9 leaves its FUSE mount (dead: "transport
 * endpoint is not connected") and its loop device behind; the next start removes both first.
 */
public final class FuseFrontendFactory implements Daemon.FrontendFactory {

    public static void register() {
        Daemon.register("fuse", new FuseFrontendFactory());
    }

    @Override
    public Frontend start(Mirror mirror, MirrorConfig cfg) throws IOException {
        return start(mirror, cfg, org.ublkmirror.frontend.FrontendOptions.defaults());
    }

    @Override
    public Frontend start(Mirror mirror, MirrorConfig cfg, org.ublkmirror.frontend.FrontendOptions fo) throws IOException {
        FuseFrontend.Options o = FuseFrontend.Options.defaults().withUringSpec(System.getenv("UBLK_MIRROR_FUSE_URING"));
        if (fo.workers() > 0) o = o.withWorkers(fo.workers());
        Path mnt = Daemon.runDir().resolve(cfg.name() + ".fuse");
        cleanupStale(mnt);
        Files.createDirectories(mnt);
        FuseDevice dev = FuseFrontend.start(mirror, mnt, o);
        System.out.println("frontend fuse: " + dev.device() + " (" + dev.negotiated() + ")");
        String devPath = dev.device().toString();
        if (DeviceLink.create(cfg.name(), devPath) == null) {
            System.out.println("fuse: could not make " + DeviceLink.of(cfg.name()) + " (not fatal)");
        }
        return new Frontend() {
            @Override
            public String kind() {
                return "fuse";
            }

            @Override
            public String device() {
                return dev.device().toString();
            }

            @Override
            public void close() throws IOException {
                DeviceLink.remove(cfg.name(), devPath);
                dev.close();
            }
        };
    }

    /** Detaches loop devices left on a dead mount of ours and unmounts it. */
    static void cleanupStale(Path mnt) throws IOException {
        String m = mnt.toAbsolutePath().toString();
        boolean mounted = false;
        for (String line : Files.readAllLines(Path.of("/proc/self/mounts"))) {
            String[] f = line.split(" ");
            if (f.length > 1 && f[1].equals(m)) mounted = true;
        }
        if (!mounted) return;
        List<String> loops = new ArrayList<>();
        try (var s = Files.list(Path.of("/sys/block"))) {
            for (Path p : (Iterable<Path>) s::iterator) {
                Path bf = p.resolve("loop/backing_file");
                if (p.getFileName().toString().startsWith("loop") && Files.exists(bf)) {
                    String back = Files.readString(bf).trim();
                    if (back.startsWith(m + "/")) loops.add("/dev/" + p.getFileName());
                }
            }
        }
        for (String l : loops) {
            try {
                Process p = new ProcessBuilder("losetup", "-d", l).redirectErrorStream(true).start();
                p.getInputStream().readAllBytes();
                p.waitFor();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new java.io.InterruptedIOException("interrupted detaching " + l);
            }
        }
        LibC.get().umount2(m, LibC.MNT_DETACH);
    }
}
