package org.ublkmirror.frontend.ublk;

import org.ublkmirror.daemon.Daemon;
import org.ublkmirror.frontend.DeviceLink;
import org.ublkmirror.frontend.Frontend;
import org.ublkmirror.frontend.FrontendOptions;
import org.ublkmirror.frontend.KernelProbe;
import org.ublkmirror.mirror.Mirror;
import org.ublkmirror.mirror.MirrorConfig;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Optional;

/**
 * Plugs ublk into the daemon ("ublk"). The device id is recorded in {@code <run dir>/NAME.ublk}
 * ({@code dev=N size=BYTES}). At start, when that device still exists, is the mirror's size and
 * its server is dead (a daemon killed with -9: the kernel keeps a USER_RECOVERY device
 * quiesced, I/O waiting), the new daemon re-attaches to it (user recovery) after the mirror's own
 * crash recovery has reconciled the legs; a mounted filesystem sees a pause. With
 * {@code --no-recover} such a device is stopped and deleted first (its waiting I/O fails) and a
 * new one made.
 */
public final class UblkFrontendFactory implements Daemon.FrontendFactory {

    /** How long a restarted daemon waits for the kernel to quiesce the old device (6.1-6.12 check every 5 s). */
    static final long RECOVER_WAIT_MILLIS = 30_000;

    private final KernelProbe probe;

    public UblkFrontendFactory() {
        this(new KernelProbe());
    }

    /** With another probe (tests give a fake /proc, /sys, /dev tree). */
    UblkFrontendFactory(KernelProbe probe) {
        this.probe = probe;
    }

    public static void register() {
        Daemon.register("ublk", new UblkFrontendFactory());
    }

    @Override
    public String unavailable() {
        KernelProbe p = probe;
        KernelProbe.Finding u = p.ublk();
        if (!u.ok()) {
            return "ublk is not available: " + u.detail() + "; " + u.fix()
                    + (u.fix().contains("--frontend fuse") ? "" : " (ublk needs kernel 6.0+; or use --frontend fuse)");
        }
        KernelProbe.Finding io = p.ioUring();
        if (!io.ok()) return "ublk needs io_uring: " + io.detail() + "; " + io.fix() + " (or use --frontend fuse)";
        try {
            UblkNative.get();
        } catch (UnsatisfiedLinkError e) {
            return "the ublk shim is missing: " + e.getMessage() + " (or use --frontend fuse)";
        }
        try (UblkCtrl c = UblkCtrl.open()) {
            return null;
        } catch (IOException e) {
            return e.getMessage() + (e.getMessage().contains("--frontend fuse") ? "" : " (run as root, or use --frontend fuse)");
        }
    }

    /** The UBLK_MIRROR_* switches ({@link UblkDevice.Tuning}), checked before the mirror is opened. */
    @Override
    public String refusedSetting() {
        try {
            UblkDevice.Tuning.fromEnv();
            return null;
        } catch (IllegalArgumentException e) {
            return e.getMessage();
        }
    }

    @Override
    public Frontend start(Mirror mirror, MirrorConfig cfg) throws IOException {
        return start(mirror, cfg, FrontendOptions.defaults());
    }

    record Record(int devId, long size) {
        static Optional<Record> read(Path p) {
            try {
                int id = -1;
                long size = -1;
                for (String tok : Files.readString(p).trim().split("\\s+")) {
                    if (tok.startsWith("dev=")) id = Integer.parseInt(tok.substring(4));
                    if (tok.startsWith("size=")) size = Long.parseLong(tok.substring(5));
                }
                return id >= 0 ? Optional.of(new Record(id, size)) : Optional.empty();
            } catch (IOException | RuntimeException e) {
                return Optional.empty();
            }
        }

        void write(Path p) throws IOException {
            Files.writeString(p, "dev=" + devId + " size=" + size + "\n");
        }
    }

    @Override
    public Frontend start(Mirror mirror, MirrorConfig cfg, FrontendOptions fo) throws IOException {
        UblkDevice.Options def = UblkDevice.Options.defaults();
        UblkDevice.Options o = UblkDevice.Options.of(fo.queues() > 0 ? fo.queues() : def.queues(), fo.depth() > 0 ? fo.depth() : def.depth());
        if (fo.maxIoBytes() > 0) o = o.withMaxIo(fo.maxIoBytes());
        o = o.withZeroCopy(fo.zeroCopy());
        if (fo.workers() > 0) o = o.withWorkers(fo.workers());
        String name = "ublk-" + cfg.name();
        Path recPath = Daemon.runDir().resolve(cfg.name() + ".ublk");
        UblkDevice dev = null;
        Optional<Record> rec = Record.read(recPath);
        if (rec.isPresent()) {
            int id = rec.get().devId();
            String leftOver = leftOver(id, mirror.sizeBytes());
            if (leftOver == null) {
                System.out.println("ublk: /dev/ublkb" + id + " (recorded) is gone or not ours; making a new device");
            } else if (fo.recover() && leftOver.equals("recoverable")) {
                System.out.println("ublk: re-attaching /dev/ublkb" + id + " left by the killed daemon (user recovery)");
                dev = UblkDevice.recover(mirror, id, o, name, RECOVER_WAIT_MILLIS);
                System.out.println("ublk: /dev/ublkb" + id + " recovered, I/O resumes");
            } else {
                System.out.println("ublk: removing /dev/ublkb" + id + " left by the killed daemon ("
                        + (fo.recover() ? "it cannot be recovered: " + leftOver : "--no-recover") + ")");
                try (UblkCtrl c = UblkCtrl.open()) {
                    try {
                        c.stopDev(id);
                    } catch (IOException e) {
                        System.out.println("ublk: " + e.getMessage());
                    }
                    c.delDev(id);
                }
            }
            Files.deleteIfExists(recPath);
        }
        if (dev == null) dev = UblkDevice.create(mirror, o, name);
        if (!dev.ctrl().ioctlEncoding()) {
            System.out.println("ublk: /dev/ublkb" + dev.id() + " speaks the legacy command encoding (no GET_FEATURES: a 6.0-6.4 kernel"
                    + (System.getenv("UBLK_MIRROR_UBLK_ENCODING") != null ? ", or UBLK_MIRROR_UBLK_ENCODING=legacy" : "") + ")");
        }
        if (dev.scheduler() != null) System.out.println("ublk: /dev/ublkb" + dev.id() + " I/O scheduler " + dev.scheduler());
        UblkDevice.Options run = dev.options();
        System.out.println("ublk: /dev/ublkb" + dev.id() + " " + run.queues() + (run.queues() == 1 ? " queue" : " queues") + " of depth "
                + run.depth() + ", requests up to " + (run.maxIoBytes() >= (1 << 20) ? (run.maxIoBytes() >> 20) + " MiB, " : (run.maxIoBytes() >> 10) + " KiB, ") + run.workers()
                + " workers (--queues, --depth, --max-io, --workers)"
                + (dev.inlineWrites() ? "; page-cache writes served on the queue thread, " + dev.writesDescription() : ""));
        System.out.println("ublk: /dev/ublkb" + dev.id() + (dev.zeroCopy() ? " in zero-copy mode (USER_COPY + AUTO_BUF_REG): "
                : " copies through buffers: ") + dev.readsDescription());
        new Record(dev.id(), mirror.sizeBytes()).write(recPath);
        String devPath = dev.device().toString();
        Path link = DeviceLink.create(cfg.name(), devPath);
        if (link == null) System.out.println("ublk: could not make " + DeviceLink.of(cfg.name()) + " (not fatal)");
        UblkDevice d = dev;
        return new Frontend() {
            @Override
            public String kind() {
                return "ublk";
            }

            @Override
            public String device() {
                return devPath;
            }

            @Override
            public void close() throws IOException {
                DeviceLink.remove(cfg.name(), devPath);
                d.close();
                Files.deleteIfExists(recPath);
            }
        };
    }

    /**
     * What is left of recorded device {@code id}: null when it is gone or is not ours (another
     * size, or a live server), "recoverable" when user recovery can take it over, else why not.
     */
    static String leftOver(int id, long size) throws IOException {
        try (UblkCtrl c = UblkCtrl.open()) {
            UblkCtrl.Info info = c.info(id);
            if (info == null) return null;
            if (c.sizeBytes(id) != size) return null;
            if (info.pid() > 0 && info.pid() != ProcessHandle.current().pid()
                    && running(info.pid())) {
                return null; // served by a live process: someone else's now
            }
            if ((info.flags() & UblkFeatures.USER_RECOVERY) == 0) return "added without USER_RECOVERY";
            if (info.state() == UblkCtrl.STATE_DEAD) return "not started";
            return "recoverable";
        }
    }

    /** True when process {@code pid} exists and is not a zombie (a killed daemon not yet reaped is one). */
    static boolean running(int pid) {
        try {
            String stat = Files.readString(Path.of("/proc/" + pid + "/stat"));
            char state = stat.charAt(stat.lastIndexOf(')') + 2);
            return state != 'Z' && state != 'X';
        } catch (IOException | RuntimeException e) {
            return false;
        }
    }
}
