package org.ublkmirror.frontend.ublk;

import jnr.ffi.LibraryLoader;
import jnr.ffi.Pointer;
import jnr.ffi.annotations.In;
import jnr.ffi.annotations.Out;

import java.net.URISyntaxException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * The jnr-ffi binding of native/'s libublkmirror.so (see native/src/ublkmirror.h for each
 * call). Every call returns 0 or a count on success and a negative errno on failure.
 *
 * <p>Where the library is looked up, first match wins:
 * <ol>
 * <li>the file named by system property {@code ublkmirror.native} or env {@code UBLK_MIRROR_NATIVE};</li>
 * <li>{@code libublkmirror.so} next to the jar (or classes directory) holding this class
 *     ({@code make install} puts it next to mirrorctl.jar);</li>
 * <li>{@code native/out/libublkmirror.so} of the source tree the jar was built in
 *     ({@code cli/target/mirrorctl.jar} or {@code java-api/target/...});</li>
 * <li>the system library path ({@code LD_LIBRARY_PATH}, /usr/lib ...).</li>
 * </ol>
 */
public interface UblkNative {

    /** struct ubm_desc: 24 bytes. */
    int DESC_SIZE = 24, DESC_TAG = 0, DESC_OP_FLAGS = 4, DESC_NR_SECTORS = 8, DESC_START_SECTOR = 16;

    Pointer ubm_ctrl_open(@Out int[] err);

    void ubm_ctrl_close(Pointer c);

    int ubm_ctrl_ioctl_encode(Pointer c);

    long ubm_ctrl_features(Pointer c);

    int ubm_add_dev(Pointer c, int devId, int queues, int depth, int maxIoBytes, long flags);

    int ubm_set_params(Pointer c, int devId, long sizeBytes, int lbsShift, int pbsShift, int maxSectors, int attrs,
                       int discardGranularity, int maxDiscardSectors, int maxWriteZeroesSectors);

    /** out: dev_id, nr_hw_queues, queue_depth, state, max_io_buf_bytes, ublksrv_pid, flags. */
    int ubm_get_info(Pointer c, int devId, @Out long[] out);

    int ubm_get_dev_sectors(Pointer c, int devId, @Out long[] sectors, @Out int[] lbsShift);

    int ubm_start_dev(Pointer c, int devId, int pid);

    int ubm_stop_dev(Pointer c, int devId);

    int ubm_del_dev(Pointer c, int devId);

    int ubm_start_recovery(Pointer c, int devId);

    int ubm_end_recovery(Pointer c, int devId, int pid);

    int ubm_cdev_open(int devId);

    int ubm_close_fd(int fd);

    Pointer ubm_queue_open(int cdevFd, int ioctlEncode, int qId, int depth, int zc, @Out int[] err);

    int ubm_queue_set_buf(Pointer q, int tag, long addr);

    int ubm_queue_set_read_source(Pointer q, int fd, long base, long limit, int allowInline);

    long ubm_queue_copy(Pointer q, int tag, long bufAddr, long len, int toRequest);

    void ubm_queue_stats(Pointer q, @Out long[] out);

    int ubm_queue_fetch_all(Pointer q);

    int ubm_queue_wake(Pointer q);

    int ubm_queue_next(Pointer q, @In Pointer done, int ndone, Pointer descs, int max, int timeoutMs);

    int ubm_queue_live(Pointer q);

    int ubm_queue_register_bufs(Pointer q, long bufLen);

    int ubm_queue_write_start(Pointer q, int tag, int fd, long pos, long len);

    long ubm_queue_write_wait(Pointer q, int slot);

    long ubm_queue_write_fixed(Pointer q, int tag, int fd, long pos, long len);

    void ubm_queue_close(Pointer q);

    int ubm_desc_size();

    String strerror(int errnum);

    /** The bound library, loaded on first use; throws {@link UnsatisfiedLinkError} with where it looked. */
    static UblkNative get() {
        return Holder.get();
    }

    /** A negative errno as text. */
    static String err(int negErrno) {
        return Holder.libc().strerror(-negErrno);
    }

    final class Holder {
        private static UblkNative lib;
        private static Throwable failure;
        private static Libc libc;

        public interface Libc {
            String strerror(int errnum);
        }

        private Holder() {
        }

        static synchronized Libc libc() {
            if (libc == null) libc = LibraryLoader.create(Libc.class).load("c");
            return libc;
        }

        static synchronized UblkNative get() {
            if (lib != null) return lib;
            if (failure != null) throw new UnsatisfiedLinkError(failure.getMessage());
            List<Path> tried = candidates();
            for (Path p : tried) {
                if (Files.isRegularFile(p)) {
                    try {
                        UblkNative n = LibraryLoader.create(UblkNative.class).library("c").search(p.getParent().toString())
                                .failImmediately().load("ublkmirror");
                        if (n.ubm_desc_size() != DESC_SIZE) {
                            throw new UnsatisfiedLinkError(p + " is another version of the shim (descriptor size "
                                    + n.ubm_desc_size() + "); rebuild with make -C native");
                        }
                        lib = n;
                        return n;
                    } catch (LinkageError | RuntimeException e) {
                        failure = e;
                        throw new UnsatisfiedLinkError("cannot load " + p + ": " + e.getMessage());
                    }
                }
            }
            try {
                UblkNative n = LibraryLoader.create(UblkNative.class).library("c").failImmediately().load("ublkmirror");
                n.ubm_desc_size();
                lib = n;
                return n;
            } catch (LinkageError | RuntimeException e) {
                failure = new UnsatisfiedLinkError("libublkmirror.so not found (looked at " + tried
                        + " and the system library path); build it with 'make -C native' or install with 'make install'");
                throw (UnsatisfiedLinkError) failure;
            }
        }

        public static List<Path> candidates() {
            List<Path> out = new ArrayList<>();
            String prop = System.getProperty("ublkmirror.native");
            if (prop == null || prop.isEmpty()) prop = System.getenv("UBLK_MIRROR_NATIVE");
            if (prop != null && !prop.isEmpty()) out.add(Path.of(prop).toAbsolutePath());
            try {
                var src = UblkNative.class.getProtectionDomain().getCodeSource();
                if (src != null) {
                    Path loc = Path.of(src.getLocation().toURI()).toAbsolutePath();
                    Path dir = Files.isDirectory(loc) ? loc : loc.getParent();
                    out.add(dir.resolve("libublkmirror.so"));
                    // source tree: <root>/cli/target/mirrorctl.jar, <root>/java-api/target/classes
                    for (Path d = dir; d != null; d = d.getParent()) {
                        Path cand = d.resolve("native/out/libublkmirror.so");
                        if (Files.isRegularFile(cand)) {
                            out.add(cand);
                            break;
                        }
                    }
                }
            } catch (URISyntaxException | RuntimeException e) {
                // no code source: the library path remains
            }
            return out;
        }
    }
}
