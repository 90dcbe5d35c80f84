package org.ublkmirror.daemon;

import org.ublkmirror.frontend.Frontend;
import org.ublkmirror.frontend.FrontendOptions;
import org.ublkmirror.frontend.KernelProbe;
import org.ublkmirror.gateway.NbdStore;
import org.ublkmirror.link.LinkConfig;
import org.ublkmirror.link.LinkMonitor;
import org.ublkmirror.link.ResyncPolicy;
import org.ublkmirror.mirror.Inspect;
import org.ublkmirror.mirror.Mirror;
import org.ublkmirror.mirror.MirrorConfig;
import org.ublkmirror.mirror.ResyncRunner;
import org.ublkmirror.mirror.StatusReport;
import org.ublkmirror.verify.VerifyReport;
import org.ublkmirror.verify.Verifier;

import java.io.BufferedInputStream;
import java.io.BufferedOutputStream;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.Channels;
import java.nio.channels.FileChannel;
import java.nio.channels.FileLock;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CountDownLatch;

/**
 * The mirror daemon: opens the mirror (recovery first, before the device appears), exposes it
 * through a frontend, and serves the control socket (status, detach, attach, resync, verify, log,
 * stop) until stopped. One per mirror, guarded by a lock file.
 */
public final class Daemon implements AutoCloseable {

    /** Makes the kernel device for a mirror. The FUSE and ublk frontends register one each. */
    public interface FrontendFactory {
        Frontend start(Mirror mirror, MirrorConfig cfg) throws IOException;

        default Frontend start(Mirror mirror, MirrorConfig cfg, FrontendOptions opts) throws IOException {
            return start(mirror, cfg);
        }

        /**
         * Why this frontend cannot run here (one line: what is missing, what to do), or null.
         * Asked before the mirror is opened, so a refusal changes no byte.
         */
        default String unavailable() {
            return null;
        }

        /**
         * A setting of this frontend from the environment that it does not understand (one line:
         * which, and the values it takes), or null. Asked before the mirror is opened, so a
         * refusal changes no byte.
         */
        default String refusedSetting() {
            return null;
        }
    }

    private static final Map<String, FrontendFactory> FACTORIES = new LinkedHashMap<>();

    public static synchronized void register(String kind, FrontendFactory f) {
        FACTORIES.put(kind, f);
    }

    static synchronized FrontendFactory factory(String kind) {
        if (FACTORIES.isEmpty()) {
            // the built-in frontends, loaded by name so the engine does not depend on them
            for (String cls : new String[] {"org.ublkmirror.frontend.fuse.FuseFrontendFactory",
                    "org.ublkmirror.frontend.ublk.UblkFrontendFactory"}) {
                try {
                    Class.forName(cls).getMethod("register").invoke(null);
                } catch (ReflectiveOperationException | LinkageError e) {
                    // not built in this distribution
                }
            }
        }
        return FACTORIES.get(kind);
    }

    public static Path runDir() {
        String d = System.getenv("UBLK_MIRROR_RUN_DIR");
        return Path.of(d != null && !d.isEmpty() ? d : "/run/ublk-mirror");
    }

    private final MirrorConfig cfg;
    private final Mirror mirror;
    private final Frontend frontend;
    private final ServerSocketChannel server;
    private final Path socketPath;
    private final FileChannel lockChannel;
    private final FileLock lock;
    private final CountDownLatch stopped = new CountDownLatch(1);
    private volatile boolean stopping;
    private final PrintStream log;
    private final LinkMonitor link;

    private Daemon(MirrorConfig cfg, Mirror mirror, Frontend frontend, ServerSocketChannel server, Path socketPath,
                   FileChannel lockChannel, FileLock lock, PrintStream log, LinkMonitor link) {
        this.link = link;
        this.cfg = cfg;
        this.mirror = mirror;
        this.frontend = frontend;
        this.server = server;
        this.socketPath = socketPath;
        this.lockChannel = lockChannel;
        this.lock = lock;
        this.log = log;
    }

    /**
     * Starts a daemon in this process. {@code frontendKind}: auto, fuse, ublk or none (the engine
     * and control socket only).
     */
    public static Daemon start(MirrorConfig cfg, String frontendKind, Mirror.Options opts, boolean autoResync, PrintStream log) throws IOException {
        return start(cfg, LinkConfig.DEFAULTS, frontendKind, FrontendOptions.defaults(), opts, autoResync, log);
    }

    /**
     * As above, watching the secondary's link with {@code linkCfg} (timeouts for nbd:// legs,
     * heartbeat, reconnect backoff, resync policy), with the frontend's options {@code feOpts}
     * (ublk: --queues, --depth, --no-recover). {@code autoResync} false overrides the policy
     * to manual for this run ({@code start --no-auto-resync}).
     */
    public static Daemon start(MirrorConfig cfg, LinkConfig linkCfg, String frontendKind, FrontendOptions feOpts,
                               Mirror.Options opts, boolean autoResync, PrintStream log) throws IOException {
        LinkConfig link = autoResync ? linkCfg : linkCfg.withPolicy(ResyncPolicy.MANUAL);
        if (opts.remote == null) {
            opts.remote = NbdStore.Options.defaults().withIoTimeout(link.ioTimeout()).withConnectTimeout(link.connectTimeout());
        }
        opts.resyncWindow = link.resyncWindow();
        opts.resyncAdaptive = link.resyncAdaptive();
        Path run = runDir();
        Files.createDirectories(run);
        Path lockPath = run.resolve(cfg.name() + ".lock");
        FileChannel lc = FileChannel.open(lockPath, StandardOpenOption.CREATE, StandardOpenOption.WRITE);
        FileLock lk = lc.tryLock();
        if (lk == null) {
            lc.close();
            throw new IllegalStateException("mirror '" + cfg.name() + "' is already running; 'mirrorctl status " + cfg.name() + "' shows its device");
        }
        Mirror m = null;
        Frontend fe = null;
        ServerSocketChannel srv = null;
        LinkMonitor mon = null;
        try {
            String kind = frontendKind == null ? "auto" : frontendKind;
            if (kind.equals("auto")) {
                KernelProbe probe = new KernelProbe();
                kind = probe.autoFrontend();
                String why = null;
                if ("ublk".equals(kind)) {
                    FrontendFactory uf = factory("ublk");
                    why = uf == null ? "not in this build" : uf.unavailable();
                    if (why != null) kind = probe.fuse().ok() && probe.loop().ok() ? "fuse" : null;
                }
                if (kind == null) {
                    throw new IllegalStateException("no frontend can run on this kernel; 'mirrorctl doctor' says what is missing");
                }
                log.println("frontend auto: using " + kind + (kind.equals("ublk") ? " (/dev/ublk-control is usable)"
                        : " (FUSE + loop; ublk: " + (why != null ? why : probe.ublk().detail()) + ")"));
            }
            FrontendFactory ff = null;
            if (!kind.equals("none")) {
                ff = factory(kind);
                if (ff == null) {
                    throw new IllegalArgumentException("frontend '" + kind + "' is not available in this build; use --frontend fuse or auto");
                }
                String why = ff.unavailable();
                if (why != null) throw new IllegalStateException(why);
                String refused = ff.refusedSetting();
                if (refused != null) throw new IllegalArgumentException(refused);
                if (kind.equals("fuse")) {
                    KernelProbe p = new KernelProbe();
                    if (!p.fuse().ok()) throw new IllegalStateException("FUSE is missing: " + p.fuse().detail() + "; " + p.fuse().fix());
                    if (!p.loop().ok()) throw new IllegalStateException("loop is missing: " + p.loop().detail() + "; " + p.loop().fix());
                }
            }
            m = Mirror.open(cfg, opts);
            log.println("recovery: " + m.recovery().summary());
            if (m.secondary() == null && m.state() == Mirror.State.DEGRADED && !m.forker().secondaryOnline()) {
                // started degraded, as md starts a degraded array: say so, and what happens next
                log.println("secondary " + cfg.secondary() + " unreachable at start (" + m.forker().degradedReason()
                        .replaceFirst("^secondary unreachable at start: ", "") + "); running degraded on the primary, "
                        + "writes are tracked (" + m.dirtyBlocks() + " block(s) dirty now); "
                        + (link.policy() == ResyncPolicy.AUTO ? "the link monitor reconnects and resyncs by itself (policy auto)"
                        : "the link monitor probes it; 'mirrorctl attach " + cfg.name() + "' resyncs once it answers (policy manual)"));
            }
            if (link.policy() == ResyncPolicy.AUTO && m.state() == Mirror.State.DEGRADED && m.secondary() != null) {
                try {
                    m.attach(0, false);
                    log.println("secondary is back: resync started");
                } catch (IOException e) {
                    log.println("secondary not attached: " + e.getMessage());
                }
            }
            mon = new LinkMonitor(m, link, line -> {
                log.println(line);
                log.flush();
            }).start();
            if (ff != null) fe = ff.start(m, cfg, feOpts);
            Path sock = run.resolve(cfg.name() + ".sock");
            Files.deleteIfExists(sock); // we hold the lock: any socket here is stale
            srv = ServerSocketChannel.open(StandardProtocolFamily.UNIX);
            srv.bind(UnixDomainSocketAddress.of(sock));
            Files.setPosixFilePermissions(sock, PosixFilePermissions.fromString("rw-------"));
            Files.writeString(run.resolve(cfg.name() + ".pid"), ProcessHandle.current().pid() + "\n");
            Files.writeString(run.resolve(cfg.name() + ".device"), (fe == null ? "" : fe.device()) + "\n");
            Daemon d = new Daemon(cfg, m, fe, srv, sock, lc, lk, log, mon);
            Thread t = new Thread(d::serve, "control-" + cfg.name());
            t.setDaemon(true);
            t.start();
            return d;
        } catch (IOException | RuntimeException e) {
            if (mon != null) mon.close();
            if (fe != null) try { fe.close(); } catch (IOException ignored) { /* first error wins */ }
            if (m != null) try { m.close(); } catch (IOException ignored) { /* first error wins */ }
            if (srv != null) srv.close();
            lk.release();
            lc.close();
            throw e;
        }
    }

    public Mirror mirror() {
        return mirror;
    }

    public String device() {
        return frontend == null ? null : frontend.device();
    }

    public String frontendKind() {
        return frontend == null ? "none" : frontend.kind();
    }

    public void awaitStop() throws InterruptedException {
        stopped.await();
    }

    private void serve() {
        while (!stopping) {
            try {
                SocketChannel c = server.accept();
                Thread t = new Thread(() -> handle(c), "control-conn");
                t.setDaemon(true);
                t.start();
            } catch (IOException e) {
                if (stopping) return;
            }
        }
    }

    @SuppressWarnings("unchecked")
    private void handle(SocketChannel c) {
        try (c) {
            DataInputStream in = new DataInputStream(new BufferedInputStream(Channels.newInputStream(c)));
            DataOutputStream out = new DataOutputStream(new BufferedOutputStream(Channels.newOutputStream(c)));
            Map<String, Object> req;
            try {
                req = (Map<String, Object>) Wire.read(in);
            } catch (IOException e) {
                return; // a liveness probe connects and goes
            }
            Map<String, Object> res;
            try {
                res = dispatch(req, out);
            } catch (org.ublkmirror.mirror.SplitBrainException | IllegalArgumentException e) {
                res = error(3, e.getMessage());
            } catch (org.ublkmirror.leg.MetadataException e) {
                res = error(3, e.getMessage());
            } catch (IllegalStateException e) {
                res = error(4, e.getMessage());
            } catch (IOException | RuntimeException e) {
                res = error(5, String.valueOf(e.getMessage()));
            }
            Wire.write(out, res);
            out.flush();
            if ("stop".equals(req.get("verb")) && Long.valueOf(0).equals(res.get("exit"))) {
                new Thread(this::shutdown, "stop").start();
            }
        } catch (IOException e) {
            // the client went away
        }
    }

    static Map<String, Object> error(int code, String msg) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("exit", (long) code);
        m.put("error", msg);
        return m;
    }

    static Map<String, Object> ok(Object result) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("exit", 0L);
        m.put("result", result);
        return m;
    }

    private static long num(Map<String, Object> req, String key, long dflt) {
        Object v = req.get(key);
        if (v == null) return dflt;
        if (v instanceof Number n) return n.longValue();
        return Long.parseLong(v.toString());
    }

    private Map<String, Object> dispatch(Map<String, Object> req, DataOutputStream out) throws IOException {
        String verb = String.valueOf(req.get("verb"));
        switch (verb) {
            case "status":
                return ok(status());
            case "detach":
                // detaching a mirror that lost its secondary stops the reconnect attempts
                if (mirror.detachedByUser()) throw new IllegalStateException("the secondary is already detached");
                mirror.detach();
                return ok(status());
            case "attach": {
                if (mirror.state() == Mirror.State.MIRRORED) throw new IllegalStateException("the secondary is already attached and in sync");
                ResyncRunner r = mirror.attach(num(req, "rate", 0), Boolean.TRUE.equals(req.get("discard_secondary")));
                if (Boolean.TRUE.equals(req.get("wait"))) return waitResync(r, out);
                return ok(status());
            }
            case "resync": {
                ResyncRunner r = mirror.resync();
                if (mirror.state() == Mirror.State.DEGRADED) {
                    r = mirror.attach(num(req, "rate", 0), Boolean.TRUE.equals(req.get("discard_secondary")));
                } else if (r != null && req.get("rate") != null) {
                    r.setRate(num(req, "rate", 0));
                }
                if (r == null) return ok(status());
                if (Boolean.TRUE.equals(req.get("wait"))) return waitResync(r, out);
                return ok(status());
            }
            case "verify": {
                if (!mirror.forker().secondaryOnline()) {
                    throw new IllegalStateException("the secondary is offline: nothing to compare against (attach it first)");
                }
                Verifier.Options vo = Verifier.Options.DEFAULT.withRegionBytes(num(req, "region", 1 << 20)).withLock(mirror.forker().rangeLock());
                VerifyReport r;
                try {
                    r = Verifier.verify(mirror.primary().data(), mirror.secondary().data(), vo);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    throw new java.io.InterruptedIOException("verify interrupted");
                }
                return ok(org.ublkmirror.mirror.Reports.verify(r, mirror.blockSize(), true));
            }
            case "config": {
                Map<String, Object> changes = new LinkedHashMap<>(req);
                changes.remove("verb");
                LinkConfig n = link.config().merge(changes);
                link.reconfigure(n);
                mirror.setResyncWindow(n.resyncWindow(), n.resyncAdaptive());
                log.println("link settings changed: " + n.toMap());
                return ok(n.toMap());
            }
            case "log": {
                long since = num(req, "since", Long.MIN_VALUE), until = num(req, "until", Long.MAX_VALUE);
                return ok(org.ublkmirror.mirror.Reports.log(mirror.trackingLog(), since, until, "daemon"));
            }
            case "stop": {
                String dev = device();
                if (dev != null && !Boolean.TRUE.equals(req.get("force"))) {
                    String mnt = mountPointOf(dev);
                    if (mnt != null) {
                        throw new IllegalStateException(dev + " is mounted on " + mnt + "; unmount it first (or stop --force)");
                    }
                }
                return ok("stopping");
            }
            default:
                throw new IllegalArgumentException("unknown control verb '" + verb + "'");
        }
    }

    /** What status shows: the mirror's report plus the link's state. */
    private Map<String, Object> status() {
        Map<String, Object> m = StatusReport.online(mirror, device(), frontendKind());
        m.put("link", link.status());
        return m;
    }

    public LinkMonitor link() {
        return link;
    }

    private Map<String, Object> waitResync(ResyncRunner r, DataOutputStream out) throws IOException {
        while (!r.awaitDone(500)) {
            Map<String, Object> p = new LinkedHashMap<>();
            p.put("progress", true);
            p.put("copied_blocks", r.copiedBlocks());
            p.put("total_blocks", r.totalBlocks());
            p.put("block_size", (long) mirror.blockSize());
            Wire.write(out, p);
            out.flush();
        }
        if (!r.succeeded()) {
            throw new IOException("resync did not finish: " + (r.failure() != null ? r.failure().getMessage() : "cancelled"));
        }
        Map<String, Object> res = status();
        res.put("resynced_blocks", r.copiedBlocks());
        res.put("resync_report", r.report());
        log.println("resync done: " + r.report());
        return ok(res);
    }

    /** Where a block device is mounted, from /proc/self/mountinfo, or null. */
    static String mountPointOf(String dev) {
        try {
            String real = Path.of(dev).toRealPath().toString();
            for (String line : Files.readAllLines(Path.of("/proc/self/mounts"))) {
                String[] f = line.split(" ");
                if (f.length > 1 && (f[0].equals(dev) || f[0].equals(real))) return f[1];
            }
        } catch (IOException e) {
            return null;
        }
        return null;
    }

    /** Stops: device first (frontend), then the mirror, cleanly. */
    public synchronized void shutdown() {
        if (stopping) return;
        stopping = true;
        link.close();
        try {
            if (frontend != null) frontend.close();
        } catch (IOException e) {
            log.println("frontend close: " + e.getMessage());
        }
        try {
            mirror.close();
        } catch (IOException e) {
            log.println("mirror close: " + e.getMessage());
        }
        try {
            server.close();
            Files.deleteIfExists(socketPath);
            Files.deleteIfExists(runDir().resolve(cfg.name() + ".pid"));
            Files.deleteIfExists(runDir().resolve(cfg.name() + ".device"));
            lock.release();
            lockChannel.close();
        } catch (IOException e) {
            log.println("cleanup: " + e.getMessage());
        }
        stopped.countDown();
    }

    @Override
    public void close() {
        shutdown();
    }

    /** For callers that check the legs before starting: a read-only look, no lock needed. */
    static Inspect inspect(MirrorConfig cfg) throws IOException {
        return Inspect.open(cfg);
    }
}
