package org.ublkmirror.frontend.ublk;

import org.ublkmirror.frontend.KernelProbe;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

/**
 * The ublk part of `mirrorctl doctor`: the feature bitmask decoded by name, from GET_FEATURES
 * through the shim when /dev/ublk-control is there and the kernel has the command (6.5+), else
 * what the kernel version offers (with the source said).
 */
public final class UblkProbe {
    private UblkProbe() {
    }

    /** mask: the bits; source: "GET_FEATURES", "kernel version" (and why); encoding: "ioctl", "legacy" or null. */
    public record Features(long mask, List<String> names, String source, String encoding) {
    }

    public static Features features(KernelProbe probe) {
        int[] v = probe.kernelVersion();
        String why;
        if (Files.exists(Path.of("/dev/ublk-control"))) {
            try {
                UblkNative.get();
                try (UblkCtrl c = UblkCtrl.open()) {
                    long f = c.features();
                    String enc = c.ioctlEncoding() ? "ioctl" : "legacy";
                    if (f >= 0) return new Features(f, UblkFeatures.names(f), "GET_FEATURES", enc);
                    why = "kernel version (GET_FEATURES not answered: " + UblkNative.err((int) f) + "; it exists from 6.5"
                            + (System.getenv("UBLK_MIRROR_UBLK_ENCODING") != null ? ", UBLK_MIRROR_UBLK_ENCODING is set" : "") + ")";
                    long m = UblkFeatures.forKernel(v[0], v[1]);
                    return new Features(m, UblkFeatures.names(m), why, enc);
                }
            } catch (UnsatisfiedLinkError e) {
                why = "kernel version (shim not loadable: " + e.getMessage() + ")";
            } catch (IOException e) {
                why = "kernel version (" + e.getMessage() + ")";
            }
        } else {
            why = "kernel version (no /dev/ublk-control)";
        }
        if (v[0] < 6) return new Features(0, List.of(), why, null);
        long m = UblkFeatures.forKernel(v[0], v[1]);
        return new Features(m, UblkFeatures.names(m), why, v[0] > 6 || v[1] >= 4 ? "ioctl" : "legacy");
    }

    /** The doctor's ublk findings, {@code ublk-feat} then {@code ublk-zc}, from one feature probe. */
    public static List<KernelProbe.Finding> findings(KernelProbe probe) {
        Features f = features(probe);
        return List.of(finding(probe, f), zeroCopyFinding(probe, f));
    }

    /** As a doctor finding: ok when ublk is usable here and offers USER_RECOVERY. */
    static KernelProbe.Finding finding(KernelProbe probe, Features f) {
        KernelProbe.Finding u = probe.ublk();
        String bits = String.format("0x%x %s", f.mask(), f.names().isEmpty() ? "(none)" : String.join(",", f.names()));
        if (!u.ok()) {
            return new KernelProbe.Finding("ublk-feat", false, f.mask() == 0 ? "none: no ublk on this kernel"
                    : "none here; with ublk_drv this kernel version would offer " + bits, u.fix());
        }
        boolean rec = (f.mask() & UblkFeatures.USER_RECOVERY) != 0;
        String detail = bits + " (from " + f.source() + (f.encoding() == null ? "" : ", " + f.encoding() + " command encoding") + ")";
        return new KernelProbe.Finding("ublk-feat", rec, detail,
                rec ? "" : "no USER_RECOVERY: a killed daemon's device cannot be re-attached (boot 6.1+)");
    }

    /**
     * Whether the ublk frontend will run in zero-copy mode here (docs/frontend-ublk.md): always
     * "ok" (the copying mode works everywhere); the fix line says what would enable it.
     */
    static KernelProbe.Finding zeroCopyFinding(KernelProbe probe, Features f) {
        boolean both = (f.mask() & UblkFeatures.ZERO_COPY_FLAGS) == UblkFeatures.ZERO_COPY_FLAGS;
        if ("GET_FEATURES".equals(f.source()) && UblkFeatures.offersZeroCopy(f.mask(), "ioctl".equals(f.encoding())) && probe.ublk().ok()) {
            return new KernelProbe.Finding("ublk-zc", true,
                    "on: USER_COPY + AUTO_BUF_REG offered; reads are served in the kernel from the primary (--zero-copy off to copy)", "");
        }
        return new KernelProbe.Finding("ublk-zc", true, "off: requests are copied through the daemon's buffers"
                + (both ? " (zero copy needs GET_FEATURES and the ioctl command encoding)" : ""),
                both ? "" : "zero copy needs USER_COPY + AUTO_BUF_REG: a 6.16+ kernel");
    }
}
