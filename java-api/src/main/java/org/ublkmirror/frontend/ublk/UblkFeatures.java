package org.ublkmirror.frontend.ublk;

import java.util.ArrayList;
import java.util.List;

/**
 * The ublk feature bits (UBLK_F_*, include/uapi/linux/ublk_cmd.h), with the kernel version that
 * introduced each: decodes a GET_FEATURES mask, or says what a kernel version offers when
 * GET_FEATURES (6.5+) is not there.
 */
public final class UblkFeatures {
    private UblkFeatures() {
    }

    /** One feature bit. {@code since}: major * 100 + minor of the first kernel with it. */
    public record Bit(int bit, String name, int since) {
        public long mask() {
            return 1L << bit;
        }
    }

    public static final long SUPPORT_ZERO_COPY = 1L, URING_CMD_COMP_IN_TASK = 1L << 1, NEED_GET_DATA = 1L << 2,
            USER_RECOVERY = 1L << 3, USER_RECOVERY_REISSUE = 1L << 4, UNPRIVILEGED_DEV = 1L << 5,
            CMD_IOCTL_ENCODE = 1L << 6, USER_COPY = 1L << 7, ZONED = 1L << 8, AUTO_BUF_REG = 1L << 11;

    /** What zero copy (docs/frontend-ublk.md) needs: request data by pread/pwrite, and pages registered per request. */
    public static final long ZERO_COPY_FLAGS = USER_COPY | AUTO_BUF_REG;

    /**
     * True when a kernel answering {@code features} to GET_FEATURES (so speaking the ioctl
     * encoding) offers zero copy: the one rule the device and `mirrorctl doctor` both follow.
     */
    public static boolean offersZeroCopy(long features, boolean ioctlEncoding) {
        return ioctlEncoding && features > 0 && (features & ZERO_COPY_FLAGS) == ZERO_COPY_FLAGS;
    }

    public static final List<Bit> BITS = List.of(
            new Bit(0, "SUPPORT_ZERO_COPY", 600),
            new Bit(1, "URING_CMD_COMP_IN_TASK", 600),
            new Bit(2, "NEED_GET_DATA", 600),
            new Bit(3, "USER_RECOVERY", 601),
            new Bit(4, "USER_RECOVERY_REISSUE", 601),
            new Bit(5, "UNPRIVILEGED_DEV", 602),
            new Bit(6, "CMD_IOCTL_ENCODE", 604),
            new Bit(7, "USER_COPY", 605),
            new Bit(8, "ZONED", 606),
            new Bit(9, "USER_RECOVERY_FAIL_IO", 613),
            new Bit(10, "UPDATE_SIZE", 614),
            new Bit(11, "AUTO_BUF_REG", 615),
            new Bit(12, "QUIESCE", 615),
            new Bit(13, "PER_IO_DAEMON", 616),
            new Bit(14, "BUF_REG_OFF_DAEMON", 616),
            // seen first in 7.3's ublk_cmd.h (trixie-backports); some may be older: only used to
            // name GET_FEATURES bits and, for kernels without GET_FEATURES (before 6.5), not at all
            new Bit(15, "BATCH_IO", 703),
            new Bit(16, "INTEGRITY", 703),
            new Bit(17, "SAFE_STOP_DEV", 703),
            new Bit(18, "NO_AUTO_PART_SCAN", 703),
            new Bit(19, "SHMEM_ZC", 703),
            new Bit(20, "IO_DESC_SIZE", 703));

    /** Names of the bits set in {@code mask}; unknown bits as BIT_n. */
    public static List<String> names(long mask) {
        List<String> out = new ArrayList<>();
        for (int b = 0; b < 64; b++) {
            if ((mask & (1L << b)) == 0) continue;
            String name = "BIT_" + b;
            for (Bit k : BITS) if (k.bit() == b) name = k.name();
            out.add(name);
        }
        return out;
    }

    /** The mask a kernel of this version offers (from the list above), for kernels without GET_FEATURES. */
    public static long forKernel(int major, int minor) {
        int v = major * 100 + minor;
        long m = 0;
        for (Bit k : BITS) if (v >= k.since()) m |= k.mask();
        // SUPPORT_ZERO_COPY was declared but never offered before AUTO_BUF_REG-era kernels
        return m & ~SUPPORT_ZERO_COPY;
    }
}
