package org.ublkmirror.frontend.ublk;

import jnr.ffi.Pointer;

import java.io.Closeable;
import java.io.IOException;

/**
 * The ublk control plane (/dev/ublk-control) through the shim: feature probe, ADD_DEV,
 * SET_PARAMS, START/STOP/DEL_DEV, GET_DEV_INFO, user recovery. Thread-safe (the shim serializes
 * commands). Each failure is an {@link IOException} naming the command and the errno.
 */
public final class UblkCtrl implements Closeable {

    /** Device states (UBLK_S_DEV_*). */
    public static final int STATE_DEAD = 0, STATE_LIVE = 1, STATE_QUIESCED = 2;

    public static final int ENOENT = 2, EBUSY = 16, ENODEV = 19, EINVAL = 22, EOPNOTSUPP = 95;

    /** GET_DEV_INFO's answer. */
    public record Info(int devId, int queues, int depth, int state, int maxIoBytes, int pid, long flags) {
        public String stateName() {
            return switch (state) {
                case STATE_DEAD -> "dead";
                case STATE_LIVE -> "live";
                case STATE_QUIESCED -> "quiesced";
                default -> "state " + state;
            };
        }
    }

    private final UblkNative n;
    private Pointer c;

    private UblkCtrl(UblkNative n, Pointer c) {
        this.n = n;
        this.c = c;
    }

    /** Opens /dev/ublk-control and probes the features. */
    public static UblkCtrl open() throws IOException {
        UblkNative n = UblkNative.get();
        int[] err = new int[1];
        Pointer c = n.ubm_ctrl_open(err);
        if (c == null || c.address() == 0) {
            throw new IOException("cannot open /dev/ublk-control: " + UblkNative.err(err[0])
                    + (err[0] == -ENOENT ? " (run: modprobe ublk_drv; needs kernel 6.0+; or use --frontend fuse)" : ""));
        }
        return new UblkCtrl(n, c);
    }

    UblkNative lib() {
        return n;
    }

    /** True when the kernel speaks the ioctl command encoding (6.4+ with GET_FEATURES, i.e. 6.5+). */
    public boolean ioctlEncoding() {
        return n.ubm_ctrl_ioctl_encode(c) != 0;
    }

    /** GET_FEATURES, or -1 when the kernel has no such command (6.0-6.4). */
    public long features() {
        long f = n.ubm_ctrl_features(c);
        return f < 0 ? -1 : f;
    }

    private static IOException fail(String what, int r) {
        return new IOException("ublk " + what + ": " + UblkNative.err(r));
    }

    public int addDev(int devId, int queues, int depth, int maxIoBytes, long flags) throws IOException {
        int r = n.ubm_add_dev(c, devId, queues, depth, maxIoBytes, flags);
        if (r < 0) throw fail("ADD_DEV", r);
        return r;
    }

    public void setParams(int devId, long sizeBytes, int lbsShift, int pbsShift, int maxSectors, int attrs,
                          int discardGranularity, int maxDiscardSectors, int maxWriteZeroesSectors) throws IOException {
        int r = n.ubm_set_params(c, devId, sizeBytes, lbsShift, pbsShift, maxSectors, attrs, discardGranularity,
                maxDiscardSectors, maxWriteZeroesSectors);
        if (r < 0) throw fail("SET_PARAMS", r);
    }

    /** GET_DEV_INFO, or null when there is no such device. */
    public Info info(int devId) throws IOException {
        long[] o = new long[7];
        int r = n.ubm_get_info(c, devId, o);
        if (r == -ENODEV || r == -ENOENT) return null;
        if (r < 0) throw fail("GET_DEV_INFO", r);
        return new Info((int) o[0], (int) o[1], (int) o[2], (int) o[3], (int) o[4], (int) o[5], o[6]);
    }

    /** The device size in bytes (GET_PARAMS). */
    public long sizeBytes(int devId) throws IOException {
        long[] s = new long[1];
        int[] shift = new int[1];
        int r = n.ubm_get_dev_sectors(c, devId, s, shift);
        if (r < 0) throw fail("GET_PARAMS", r);
        return s[0] << 9;
    }

    public void startDev(int devId, int pid) throws IOException {
        int r = n.ubm_start_dev(c, devId, pid);
        if (r < 0) throw fail("START_DEV", r);
    }

    public void stopDev(int devId) throws IOException {
        int r = n.ubm_stop_dev(c, devId);
        if (r < 0) throw fail("STOP_DEV", r);
    }

    public void delDev(int devId) throws IOException {
        int r = n.ubm_del_dev(c, devId);
        if (r < 0) throw fail("DEL_DEV", r);
    }

    /** START_USER_RECOVERY: returns false on EBUSY (old server not gone yet, or not quiesced). */
    public boolean startRecovery(int devId) throws IOException {
        int r = n.ubm_start_recovery(c, devId);
        if (r == -EBUSY) return false;
        if (r < 0) throw fail("START_USER_RECOVERY", r);
        return true;
    }

    public void endRecovery(int devId, int pid) throws IOException {
        int r = n.ubm_end_recovery(c, devId, pid);
        if (r < 0) throw fail("END_USER_RECOVERY", r);
    }

    @Override
    public synchronized void close() {
        if (c != null) {
            n.ubm_ctrl_close(c);
            c = null;
        }
    }
}
