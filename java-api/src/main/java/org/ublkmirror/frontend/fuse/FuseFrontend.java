package org.ublkmirror.frontend.fuse;

import org.ublkmirror.frontend.BlockTarget;
import org.ublkmirror.sys.LibC;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;

/**
 * The FUSE + loop frontend (DESIGN.md section 4): serves a {@link BlockTarget} as one regular
 * file through /dev/fuse, speaking the kernel protocol directly (no libfuse), and binds a loop
 * device with direct I/O to that file, giving /dev/loopN. Needs root (mount(2), losetup).
 *
 * <pre>{@code
 * try (FuseDevice dev = FuseFrontend.start(target, Path.of("/run/ublkmirror/fuse0"), FuseFrontend.Options.defaults())) {
 *     Path block = dev.device(); // /dev/loopN
 *     ...
 * }
 * }</pre>
 *
 * See docs/frontend-fuse.md for what is negotiated and why, the teardown order and the watchdog.
 */
public final class FuseFrontend {
    private FuseFrontend() {
    }

    /**
     * Tunables.
     *
     * @param workers         threads serving /dev/fuse; each holds one request in the target at a time
     * @param maxWrite        largest READ/WRITE in bytes (max_write, max_pages = maxWrite / 4 KiB)
     * @param maxBackground   async requests the kernel may have outstanding (caps the loop device's queue depth)
     * @param watchdogTimeout a request in the target longer than this (or no progress while the kernel
     *                        waits) aborts the FUSE connection, so I/O fails instead of hanging;
     *                        {@link Duration#ZERO} disables the watchdog
     * @param closeTimeout    how long close() waits for the kernel to let go before it aborts the connection
     * @param fileName        name of the file in the FUSE mount
     * @param directIoOpen    answer OPEN with FOPEN_DIRECT_IO|FOPEN_PARALLEL_DIRECT_WRITES
     * @param loopDirectIo    bind the loop device with --direct-io=on (needed for speed, see the notes)
     * @param uringThreads    FUSE over io_uring, when the kernel offers it (module parameter
     *                        fuse.enable_uring=Y at mount time): threads per queue (the kernel has one
     *                        queue per possible CPU); 0 keeps every request on read/write of /dev/fuse
     * @param uringDepth      ring entries (requests in hand at once) per io_uring thread
     */
    public record Options(int workers, int maxWrite, int maxBackground, Duration watchdogTimeout,
                          Duration closeTimeout, String fileName, boolean directIoOpen, boolean loopDirectIo,
                          int uringThreads, int uringDepth) {
        public Options {
            if (workers < 1 || workers > 1024) {
                throw new IllegalArgumentException("workers must be 1..1024: " + workers);
            }
            if (maxWrite < 4096 || maxWrite > (1 << 20) || maxWrite % 4096 != 0) {
                throw new IllegalArgumentException("maxWrite must be a multiple of 4 KiB up to 1 MiB: " + maxWrite);
            }
            if (maxBackground < 1 || maxBackground > 32767) {
                throw new IllegalArgumentException("maxBackground must be 1..32767: " + maxBackground);
            }
            if (fileName.isEmpty() || fileName.contains("/") || fileName.equals(".") || fileName.equals("..")) {
                throw new IllegalArgumentException("bad file name: " + fileName);
            }
            if (uringThreads < 0 || uringThreads > 64) {
                throw new IllegalArgumentException("uringThreads must be 0..64: " + uringThreads);
            }
            if (uringDepth < 1 || uringDepth > 256) {
                throw new IllegalArgumentException("uringDepth must be 1..256: " + uringDepth);
            }
        }

        /** Default worker count; {@code -Dublkmirror.fuse.workers=N} overrides it (benchmark A/B of daemons). */
        static final int DEFAULT_WORKERS = Integer.getInteger("ublkmirror.fuse.workers", 8);
        /** {@code -Dublkmirror.fuse.directio=true}: FOPEN_DIRECT_IO by default (benchmark A/B of daemons). */
        static final boolean DEFAULT_DIRECT_IO_OPEN = Boolean.getBoolean("ublkmirror.fuse.directio");

        public static Options defaults() {
            return new Options(DEFAULT_WORKERS, 1 << 20, 256, Duration.ofSeconds(60), Duration.ofSeconds(10), "disk",
                    DEFAULT_DIRECT_IO_OPEN, true, 0, 1);
        }

        public Options withWorkers(int n) {
            return new Options(n, maxWrite, maxBackground, watchdogTimeout, closeTimeout, fileName, directIoOpen, loopDirectIo, uringThreads, uringDepth);
        }

        public Options withWatchdogTimeout(Duration d) {
            return new Options(workers, maxWrite, maxBackground, d, closeTimeout, fileName, directIoOpen, loopDirectIo, uringThreads, uringDepth);
        }

        public Options withCloseTimeout(Duration d) {
            return new Options(workers, maxWrite, maxBackground, watchdogTimeout, d, fileName, directIoOpen, loopDirectIo, uringThreads, uringDepth);
        }

        public Options withDirectIoOpen(boolean b) {
            return new Options(workers, maxWrite, maxBackground, watchdogTimeout, closeTimeout, fileName, b, loopDirectIo, uringThreads, uringDepth);
        }

        public Options withLoopDirectIo(boolean b) {
            return new Options(workers, maxWrite, maxBackground, watchdogTimeout, closeTimeout, fileName, directIoOpen, b, uringThreads, uringDepth);
        }

        public Options withFileName(String name) {
            return new Options(workers, maxWrite, maxBackground, watchdogTimeout, closeTimeout, name, directIoOpen, loopDirectIo, uringThreads, uringDepth);
        }

        public Options withMaxBackground(int n) {
            return new Options(workers, maxWrite, n, watchdogTimeout, closeTimeout, fileName, directIoOpen, loopDirectIo, uringThreads, uringDepth);
        }

        /**
         * FUSE over io_uring from a spec: {@code THREADS:DEPTH} (threads per queue, entries per
         * thread), {@code off}; null leaves the options as they are. (FuseServe --uring, and the
         * daemon's environment variable UBLK_MIRROR_FUSE_URING.)
         */
        public Options withUringSpec(String spec) {
            if (spec == null || spec.isBlank()) return this;
            if (spec.equals("off") || spec.equals("0")) return withUring(0, uringDepth);
            String[] p = spec.split(":");
            try {
                return withUring(Integer.parseInt(p[0]), p.length > 1 ? Integer.parseInt(p[1]) : uringDepth);
            } catch (NumberFormatException e) {
                throw new IllegalArgumentException("FUSE io_uring setting '" + spec + "' is not THREADS:DEPTH or off");
            }
        }

        /** FUSE over io_uring: {@code threads} per queue (0: off), {@code depth} entries each. */
        public Options withUring(int threads, int depth) {
            return new Options(workers, maxWrite, maxBackground, watchdogTimeout, closeTimeout, fileName, directIoOpen, loopDirectIo, threads, depth);
        }
    }

    /**
     * Mounts the FUSE file system on {@code mountDir} (created if missing; must not be a mount
     * point already), serves {@code target} as {@code mountDir/<fileName>} and binds a loop
     * device to it. On failure everything done so far is undone.
     */
    public static FuseDevice start(BlockTarget target, Path mountDir, Options opts) throws IOException {
        long size = target.sizeBytes();
        int bs = target.blockSize();
        if (bs != 512 && bs != 1024 && bs != 2048 && bs != 4096) {
            throw new IllegalArgumentException("loop devices take sector sizes 512..4096; target block size is " + bs);
        }
        if (size <= 0 || size % bs != 0) {
            throw new IllegalArgumentException("target size " + size + " is not a positive multiple of its block size " + bs);
        }
        Files.createDirectories(mountDir);
        Path mnt = mountDir.toAbsolutePath().normalize();
        LibC c = LibC.get();
        int fd = c.open("/dev/fuse", LibC.O_RDWR | LibC.O_CLOEXEC, 0);
        if (fd < 0) {
            int e = LibC.errno();
            throw new IOException("cannot open /dev/fuse: " + c.strerror(e));
        }
        String data = "fd=" + fd + ",rootmode=40000,user_id=0,group_id=0,max_read=" + opts.maxWrite()
                + ",allow_other,default_permissions";
        long flags = LibC.MS_NOSUID | LibC.MS_NODEV;
        if (c.mount("ublkmirror", mnt.toString(), "fuse.ublkmirror", flags, data) != 0) {
            int e = LibC.errno();
            // Kernels without subtype support know only "fuse".
            if (e != LibC.ENODEV || c.mount("ublkmirror", mnt.toString(), "fuse", flags, data) != 0) {
                e = LibC.errno();
                c.close(fd);
                throw new IOException("mount of FUSE on " + mnt + " failed: " + c.strerror(e)
                        + (e == LibC.EPERM ? " (needs root)" : ""));
            }
        }
        FuseServer server = new FuseServer(fd, target, opts.fileName(), opts);
        FuseDevice dev = new FuseDevice(fd, server, target, mnt, opts);
        try {
            server.start();
            if (!server.awaitInit(10_000)) {
                throw new IOException("the kernel sent no FUSE INIT within 10 s");
            }
            if (!server.awaitUring(5_000)) {
                System.getLogger(FuseFrontend.class.getName()).log(System.Logger.Level.WARNING,
                        "FUSE over io_uring did not come up; requests are served through /dev/fuse reads");
            }
            dev.afterMount();
        } catch (IOException | RuntimeException | Error e) {
            try {
                dev.close();
            } catch (IOException | RuntimeException s) {
                e.addSuppressed(s);
            }
            throw e;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            dev.close();
            throw new IOException("interrupted while starting", e);
        }
        return dev;
    }
}
