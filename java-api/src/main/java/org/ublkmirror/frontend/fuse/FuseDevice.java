package org.ublkmirror.frontend.fuse;

import org.ublkmirror.frontend.BlockTarget;
import org.ublkmirror.sys.LibC;

import java.io.Closeable;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;

/**
 * A running FUSE + loop frontend: the FUSE mount serving the target as one file, its worker
 * threads, the loop device bound to the file, and the watchdog. Made by
 * {@link FuseFrontend#start}; {@link #close} undoes all of it (also run by a shutdown hook).
 *
 * <p>Teardown order: {@code losetup -d} (the kernel defers it while the device is open), then
 * unmount FUSE, lazily if the loop driver still holds the file (the workers keep serving until it
 * lets go and the kernel ends the connection), then the workers end on ENODEV. If they have not
 * ended after {@link FuseFrontend.Options#closeTimeout}, the connection is aborted.
 */
public final class FuseDevice implements Closeable {
    private static final System.Logger LOG = System.getLogger(FuseDevice.class.getName());
    static final Path FUSECTL = Path.of("/sys/fs/fuse/connections");
    /** Devices of this process past {@link #afterMount}; whether this process mounted fusectl (guarded by the class). */
    private static int fusectlUsers;
    private static boolean fusectlOurs;

    private final LibC c = LibC.get();
    private final int fd;
    private final FuseServer server;
    private final BlockTarget target;
    private final Path mountDir;
    private final FuseFrontend.Options opts;
    private volatile Path device;
    private volatile long connectionId = -1;
    private volatile boolean mounted = true;
    private volatile boolean closed;
    private volatile boolean aborted;
    private volatile String abortReason;
    private Thread watchdog;
    /** This device counts as a fusectl user ({@link #acquireFusectl}); released when its connection ends. */
    private boolean fusectlUser;
    private Thread hook;

    FuseDevice(int fd, FuseServer server, BlockTarget target, Path mountDir, FuseFrontend.Options opts) {
        this.fd = fd;
        this.server = server;
        this.target = target;
        this.mountDir = mountDir;
        this.opts = opts;
    }

    void afterMount() throws IOException {
        connectionId = connectionIdOf(mountDir);
        fusectlUser = true;
        try {
            acquireFusectl();
        } catch (IOException e) {
            LOG.log(System.Logger.Level.WARNING, "fusectl unavailable, the watchdog cannot abort: " + e.getMessage());
        }
        if (!opts.watchdogTimeout().isZero()) {
            watchdog = new Thread(this::watch, "fuse-watchdog");
            watchdog.setDaemon(true);
            watchdog.start();
        }
        hook = new Thread(() -> {
            try {
                close();
            } catch (IOException | RuntimeException e) {
                System.err.println("ublk-mirror: FUSE teardown at exit failed: " + e);
            }
        }, "fuse-teardown");
        Runtime.getRuntime().addShutdownHook(hook);
        device = LoopDevice.attach(backingFile(), target.blockSize(), opts.loopDirectIo());
        if (opts.loopDirectIo() && !LoopDevice.directIo(device)) {
            LOG.log(System.Logger.Level.WARNING, device + " did not enable direct I/O: expect low IOPS");
        }
    }

    /** The block device: /dev/loopN. */
    public Path device() {
        return device;
    }

    /** The file the loop device is bound to: {@code mountDir/<fileName>}. */
    public Path backingFile() {
        return mountDir.resolve(opts.fileName());
    }

    public Path mountDir() {
        return mountDir;
    }

    /** The FUSE connection's id (its directory under /sys/fs/fuse/connections). */
    public long connectionId() {
        return connectionId;
    }

    /** Whether the loop device is still bound to our file (reads /sys/block/loopN/loop/backing_file). */
    public boolean isAttached() {
        Path d = device;
        if (d == null) {
            return false;
        }
        String b = LoopDevice.backingFile(d);
        return b != null && (b.equals(backingFile().toString()) || b.endsWith("/" + opts.fileName()));
    }

    /** True once the watchdog (or close) aborted the connection: I/O on the device now fails. */
    public boolean isAborted() {
        return aborted;
    }

    public String abortReason() {
        return abortReason;
    }

    /** FSYNC requests served (each one a target flush). */
    public long flushCount() {
        return server.flushes.get();
    }

    /** Requests answered so far; requests the target failed. */
    public long requestCount() {
        return server.completed.get();
    }

    public long errorCount() {
        return server.errors.get();
    }

    /** True when requests travel over FUSE io_uring rings (negotiated and every entry registered). */
    public boolean uringActive() {
        return server.uringActive();
    }

    /** Requests served from io_uring ring entries (the rest came through /dev/fuse reads). */
    public long uringRequestCount() {
        return server.uringServed.get();
    }

    /** "FUSE 7.x, flags 0x..." as negotiated with the kernel. */
    public String negotiated() {
        return server.negotiated();
    }

    /**
     * Aborts the FUSE connection through fusectl: every pending and future request fails with an
     * error (the loop device then returns I/O errors) and the workers end. The last resort for a
     * hung target; the device stays bound until {@link #close}.
     */
    public void abort(String reason) {
        if (aborted) {
            return;
        }
        aborted = true;
        abortReason = reason;
        LOG.log(System.Logger.Level.ERROR, "aborting FUSE connection " + connectionId + " of " + mountDir + ": " + reason);
        try {
            Files.writeString(FUSECTL.resolve(Long.toString(connectionId)).resolve("abort"), "1");
        } catch (IOException e) {
            LOG.log(System.Logger.Level.ERROR, "abort through fusectl failed: " + e);
        }
    }

    /** Waits until every worker has ended (the connection is gone); false on timeout. */
    public boolean awaitTermination(long timeout, TimeUnit unit) throws InterruptedException {
        return server.join(unit.toMillis(timeout));
    }

    @Override
    public void close() throws IOException {
        synchronized (this) {
            if (closed) {
                return;
            }
            closed = true;
        }
        IOException failure = null;
        if (watchdog != null) {
            watchdog.interrupt();
        }
        Path d = device;
        if (d != null && isAttached()) {
            try {
                LoopDevice.detach(d);
            } catch (IOException e) {
                failure = e;
            }
        }
        if (mounted) {
            if (c.umount2(mountDir.toString(), 0) != 0) {
                int e = LibC.errno();
                if (e == LibC.EBUSY) {
                    // The loop driver still holds the file (detach deferred while the device is open):
                    // detach the mount; we keep serving until the kernel lets go of the file.
                    if (c.umount2(mountDir.toString(), LibC.MNT_DETACH) != 0) {
                        e = LibC.errno();
                        failure = addFailure(failure, new IOException("umount -l " + mountDir + ": " + c.strerror(e)));
                    }
                } else if (e != LibC.EINVAL) { // EINVAL: not mounted any more
                    failure = addFailure(failure, new IOException("umount " + mountDir + ": " + c.strerror(e)));
                }
            }
            mounted = false;
        }
        try {
            boolean done = server.join(opts.closeTimeout().toMillis());
            if (!done) {
                abort("still serving " + opts.closeTimeout().toSeconds() + " s after close (device still open?)");
                done = server.join(5_000);
            }
            if (done) {
                c.close(fd);
                if (fusectlUser) releaseFusectl(connectionId);
            } else {
                failure = addFailure(failure, new IOException("FUSE workers still running after abort"));
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            failure = addFailure(failure, new IOException("interrupted while waiting for the FUSE workers"));
        }
        if (hook != null && Thread.currentThread() != hook) {
            try {
                Runtime.getRuntime().removeShutdownHook(hook);
            } catch (IllegalStateException ignored) {
                // shutting down already
            }
        }
        if (failure != null) {
            throw failure;
        }
    }

    private static IOException addFailure(IOException first, IOException next) {
        if (first == null) {
            return next;
        }
        first.addSuppressed(next);
        return first;
    }

    /**
     * The watchdog: aborts the connection when a request has been in the target longer than the
     * limit, or when the kernel has requests waiting and none was answered for that long (the
     * server hung or its workers died). A stopped process (SIGSTOP) cannot watch itself; see
     * docs/frontend-fuse.md.
     */
    private void watch() {
        long limit = opts.watchdogTimeout().toNanos();
        long period = Math.max(10, Math.min(1000, opts.watchdogTimeout().toMillis() / 4));
        long lastCompleted = server.completed.get();
        long lastProgress = System.nanoTime();
        Path waitingFile = FUSECTL.resolve(Long.toString(connectionId)).resolve("waiting");
        while (!closed && !aborted) {
            try {
                Thread.sleep(period);
            } catch (InterruptedException e) {
                return;
            }
            long now = System.nanoTime();
            FuseServer.Stuck s = server.longestBusy();
            if (s != null && s.nanos() > limit) {
                abort("request stuck in the target for " + TimeUnit.NANOSECONDS.toMillis(s.nanos()) + " ms: " + s.what());
                return;
            }
            long done = server.completed.get();
            if (done != lastCompleted) {
                lastCompleted = done;
                lastProgress = now;
                continue;
            }
            if (now - lastProgress > limit) {
                int waiting = 0;
                try {
                    waiting = Integer.parseInt(Files.readString(waitingFile).trim());
                } catch (IOException | NumberFormatException ignored) {
                    // no fusectl: only the stuck-request check works
                }
                if (waiting > 0 && (s == null || !server.anyAlive())) {
                    abort(waiting + " requests waiting and none answered for "
                            + TimeUnit.NANOSECONDS.toMillis(now - lastProgress) + " ms (workers alive: " + server.anyAlive() + ")");
                    return;
                }
                lastProgress = now;
            }
        }
    }

    /** st_dev of the FUSE mount's root, as the kernel's dev_t, names its fusectl directory. */
    static long connectionIdOf(Path mnt) throws IOException {
        long dev = ((Number) Files.getAttribute(mnt, "unix:dev")).longValue();
        // glibc's encoding of dev_t (gnu_dev_major/minor) back to the kernel's MKDEV(major, minor).
        long major = ((dev >>> 8) & 0xfff) | ((dev >>> 32) & ~0xfffL);
        long minor = (dev & 0xff) | ((dev >>> 12) & ~0xffL);
        return (major << 20) | minor;
    }

    /** Whether fusectl is mounted on /sys/fs/fuse/connections. */
    static boolean fusectlMounted() throws IOException {
        for (String line : Files.readAllLines(Path.of("/proc/self/mounts"))) {
            String[] f = line.split(" ");
            if (f.length > 2 && f[1].equals(FUSECTL.toString()) && f[2].equals("fusectl")) {
                return true;
            }
        }
        return false;
    }

    /**
     * Mounts fusectl on /sys/fs/fuse/connections unless it is there (a machine without systemd's
     * sys-fs-fuse-connections.mount), remembering that this process did; counts this device as a user.
     */
    static synchronized void acquireFusectl() throws IOException {
        fusectlUsers++;
        if (fusectlMounted()) return;
        LibC c = LibC.get();
        if (c.mount("fusectl", FUSECTL.toString(), "fusectl", 0, "") != 0) {
            int e = LibC.errno();
            if (e != LibC.EBUSY) {
                throw new IOException("mount fusectl on " + FUSECTL + ": " + c.strerror(e));
            }
            return;
        }
        fusectlOurs = true;
    }

    /**
     * After a device's connection ended: when it was this process's last device and this process
     * mounted fusectl, unmounts it again once no FUSE connection is left on the machine (another
     * process's may rely on it; then it stays). Waits up to a second for the kernel to remove the
     * ended connection's directory ({@code connection}).
     */
    static synchronized void releaseFusectl(long connection) {
        if (--fusectlUsers > 0 || !fusectlOurs) return;
        Path mine = FUSECTL.resolve(Long.toString(connection));
        for (int i = 0; i < 100 && Files.exists(mine); i++) {
            try {
                Thread.sleep(10);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return;
            }
        }
        try (var dirs = Files.list(FUSECTL)) {
            if (dirs.findAny().isPresent()) return;
        } catch (IOException e) {
            return;
        }
        if (LibC.get().umount2(FUSECTL.toString(), 0) == 0 || LibC.errno() == LibC.EINVAL) fusectlOurs = false;
    }
}
