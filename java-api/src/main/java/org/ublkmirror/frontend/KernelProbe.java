package org.ublkmirror.frontend;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * What this kernel offers the frontends: ublk (and its features), io_uring, FUSE, loop. Each
 * finding says what is missing and how to fix it. `mirrorctl doctor` prints these; `--frontend
 * auto` picks from them.
 */
public final class KernelProbe {

    /** One finding. {@code fix} is empty when nothing needs doing. */
    public record Finding(String name, boolean ok, String detail, String fix) {
    }

    private final Path root;

    public KernelProbe() {
        this(Path.of("/"));
    }

    /** Probes under another root (tests give a fake /proc, /sys, /dev tree). */
    public KernelProbe(Path root) {
        this.root = root;
    }

    private Path p(String abs) {
        return root.resolve(abs.substring(1));
    }

    private String read(String abs) {
        try {
            return Files.readString(p(abs)).trim();
        } catch (IOException e) {
            return null;
        }
    }

    public String kernelRelease() {
        String r = read("/proc/sys/kernel/osrelease");
        return r == null ? "unknown" : r;
    }

    /** Major.minor of the running kernel, e.g. 6.12 as {6, 12}. */
    public int[] kernelVersion() {
        String r = kernelRelease();
        try {
            String[] parts = r.split("[.-]");
            return new int[] {Integer.parseInt(parts[0]), Integer.parseInt(parts[1])};
        } catch (RuntimeException e) {
            return new int[] {0, 0};
        }
    }

    private boolean moduleBuiltinOrLoaded(String mod) {
        if (Files.isDirectory(p("/sys/module/" + mod))) return true;
        String rel = kernelRelease();
        String builtin = read("/lib/modules/" + rel + "/modules.builtin");
        return builtin != null && builtin.contains("/" + mod + ".ko");
    }

    private boolean moduleAvailable(String mod) {
        String rel = kernelRelease();
        String dep = read("/lib/modules/" + rel + "/modules.dep");
        return dep != null && (dep.contains("/" + mod + ".ko:") || dep.contains("/" + mod + ".ko.xz:") || dep.contains("/" + mod + ".ko.zst:"));
    }

    public Finding ublk() {
        int[] v = kernelVersion();
        boolean ctl = Files.exists(p("/dev/ublk-control"));
        if (ctl) {
            String feat = v[0] > 6 || (v[0] == 6 && v[1] >= 5) ? "GET_FEATURES, ioctl command encoding" :
                    v[0] == 6 && v[1] >= 4 ? "ioctl command encoding (no GET_FEATURES)" : "legacy command encoding";
            String rec = v[0] > 6 || (v[0] == 6 && v[1] >= 1) ? ", USER_RECOVERY" : "";
            return new Finding("ublk", true, "/dev/ublk-control present; kernel " + kernelRelease() + " offers " + feat + rec, "");
        }
        if (v[0] < 6) {
            return new Finding("ublk", false, "kernel " + kernelRelease() + " predates ublk (6.0)",
                    "use --frontend fuse, or boot a 6.0+ kernel built with CONFIG_BLK_DEV_UBLK");
        }
        if (moduleAvailable("ublk_drv")) {
            return new Finding("ublk", false, "module ublk_drv is available but not loaded", "run: modprobe ublk_drv (or make -C kmod-shim load)");
        }
        return new Finding("ublk", false, "this kernel (" + kernelRelease() + ") has no ublk_drv",
                "use --frontend fuse (FUSE + loop), or boot a kernel with CONFIG_BLK_DEV_UBLK (Debian's 6.12 kernel has it)");
    }

    public Finding ioUring() {
        String disabled = read("/proc/sys/kernel/io_uring_disabled");
        if ("2".equals(disabled)) {
            return new Finding("io_uring", false, "disabled by sysctl kernel.io_uring_disabled=2", "run: sysctl kernel.io_uring_disabled=0");
        }
        boolean present = disabled != null || Files.exists(p("/proc/sys/kernel/io_uring_group"));
        int[] v = kernelVersion();
        if (!present && (v[0] < 5 || (v[0] == 5 && v[1] < 1))) {
            return new Finding("io_uring", false, "kernel " + kernelRelease() + " predates io_uring", "ublk needs a 6.0+ kernel");
        }
        return new Finding("io_uring", true, disabled == null ? "available" : "available (io_uring_disabled=" + disabled + ")", "");
    }

    public Finding fuse() {
        if (Files.exists(p("/dev/fuse"))) {
            String fs = read("/proc/filesystems");
            boolean reg = fs == null || fs.contains("fuse");
            return new Finding("fuse", reg, reg ? "/dev/fuse present" : "/dev/fuse present but fuse not in /proc/filesystems",
                    reg ? "" : "run: modprobe fuse");
        }
        return new Finding("fuse", false, "no /dev/fuse", "run: modprobe fuse (or mknod /dev/fuse c 10 229)");
    }

    public Finding loop() {
        boolean ctl = Files.exists(p("/dev/loop-control"));
        boolean tool = Files.isExecutable(p("/usr/sbin/losetup")) || Files.isExecutable(p("/sbin/losetup")) || Files.isExecutable(p("/usr/bin/losetup"));
        if (ctl && tool) return new Finding("loop", true, "/dev/loop-control and losetup present", "");
        if (!ctl) return new Finding("loop", false, "no /dev/loop-control", "run: modprobe loop");
        return new Finding("loop", false, "losetup is missing", "run: apt-get install util-linux");
    }

    /**
     * FUSE over io_uring (Linux 6.14+, CONFIG_FUSE_IO_URING): offered to a FUSE server only while
     * the fuse module's enable_uring is Y when it mounts. Informational: without it the FUSE
     * frontend uses read/write on /dev/fuse.
     */
    public Finding fuseUring() {
        String v = read("/sys/module/fuse/parameters/enable_uring");
        if (v == null) {
            return new Finding("fuse-io_uring", true, "not built into this kernel: the FUSE frontend uses /dev/fuse reads",
                    "");
        }
        boolean on = v.trim().equals("Y") || v.trim().equals("1");
        return new Finding("fuse-io_uring", true, on ? "on: offered to FUSE servers mounting now (the frontend uses it when asked: UBLK_MIRROR_FUSE_URING, --uring)"
                : "built in but off: the FUSE frontend uses /dev/fuse reads",
                on ? "" : "to try it: echo Y > /sys/module/fuse/parameters/enable_uring and UBLK_MIRROR_FUSE_URING=4:1 before mirrorctl start");
    }

    public Finding fusectl() {
        boolean mounted = Files.isDirectory(p("/sys/fs/fuse/connections"));
        return new Finding("fusectl", mounted, mounted ? "/sys/fs/fuse/connections present (the watchdog can abort a hung server)"
                : "fusectl not available", mounted ? "" : "run: mount -t fusectl none /sys/fs/fuse/connections");
    }

    public List<Finding> all() {
        List<Finding> out = new ArrayList<>();
        out.add(ublk());
        out.add(ioUring());
        out.add(fuse());
        out.add(fuseUring());
        out.add(loop());
        out.add(fusectl());
        return out;
    }

    /** The frontend {@code --frontend auto} picks, or null when neither can run. */
    public String autoFrontend() {
        if (ublk().ok() && ioUring().ok()) return "ublk";
        if (fuse().ok() && loop().ok()) return "fuse";
        return null;
    }
}
