package org.ublkmirror.cli;

import org.ublkmirror.daemon.ControlClient;
import org.ublkmirror.daemon.Daemon;
import org.ublkmirror.frontend.FrontendOptions;
import org.ublkmirror.mirror.Mirror;
import org.ublkmirror.mirror.MirrorConfig;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

import java.io.File;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;

@Command(name = "start", description = {"Run the daemon for a mirror and expose its device; prints the device path.",
        "After a crash, the tag tables are reconciled first and the repaired block count reported."})
final class StartCmd implements Callable<Integer> {
    @Mixin
    Common common;

    @Parameters(index = "0", paramLabel = "NAME")
    String name;

    @Option(names = "--frontend", defaultValue = "auto", description = "auto, fuse, ublk, or none (engine and control socket only). Default ${DEFAULT-VALUE}.")
    String frontend;

    @Option(names = "--foreground", description = "Stay in the foreground (for systemd or debugging).")
    boolean foreground;

    @Option(names = "--no-auto-resync", description = "Resync policy manual for this run: do not resync a returning secondary (at start or after an outage); wait for 'mirrorctl attach'.")
    boolean noAutoResync;

    @Option(names = "--queues", defaultValue = "0", description = "ublk hardware queues (one thread and io_uring each); default 1.")
    int queues;

    @Option(names = "--depth", defaultValue = "0", description = "ublk requests outstanding per queue; default 64.")
    int depth;

    @Option(names = "--max-io", paramLabel = "SIZE", description = "ublk: largest request the kernel sends, a power of two from 4K to 1M; one buffer of it per tag. Default 1M (less where --queues x --depth buffers of 1M would pass 256M).")
    String maxIo;

    @Option(names = "--workers", defaultValue = "0", description = "Threads serving requests in the engine (1..1024); default: ublk twice the CPUs (4..16), FUSE 8.")
    int workers;

    @Option(names = "--no-recover", description = "ublk: do not re-attach to a device a killed daemon left (user recovery); delete it and make a new one.")
    boolean noRecover;

    @Option(names = "--zero-copy", defaultValue = "auto", description = "ublk: auto (zero copy where the kernel offers USER_COPY + AUTO_BUF_REG, 6.16+: reads served in the kernel from the primary) or off (request data copied through the daemon's buffers). Default ${DEFAULT-VALUE}.")
    String zeroCopy;

    @Option(names = "--heap", defaultValue = "256m", description = "Daemon heap, fixed and pre-touched (default ${DEFAULT-VALUE}).")
    String heap;

    @Override
    public Integer call() throws Exception {
        MirrorConfig cfg = common.load(name);
        if (!List.of("auto", "fuse", "ublk", "none").contains(frontend)) {
            throw new IllegalArgumentException("--frontend " + frontend + " is unknown; use auto, fuse, ublk or none");
        }
        if (queues < 0 || queues > 32) throw new IllegalArgumentException("--queues " + queues + " is out of range; use 1..32");
        if (depth < 0 || depth > 4096) throw new IllegalArgumentException("--depth " + depth + " is out of range; use 1..4096");
        maxIoBytes(); // a bad --max-io is refused here, before anything starts
        if (workers < 0 || workers > 1024) throw new IllegalArgumentException("--workers " + workers + " is out of range; use 1..1024");
        if (!List.of("auto", "off").contains(zeroCopy)) throw new IllegalArgumentException("--zero-copy " + zeroCopy + " is unknown; use auto or off");
        if (ControlClient.running(name)) {
            throw new Mirrorctl.Failure(Mirrorctl.STATE, "mirror '" + name + "' is already running; 'mirrorctl status " + name + "' shows its device");
        }
        if (foreground) return foreground(cfg);
        return spawn(cfg);
    }

    /** --max-io in bytes, 0 when not given (the frontend's default); refused in one line when not a power of two in 4K..1M. */
    private int maxIoBytes() {
        if (maxIo == null) return 0;
        long b;
        try {
            b = Units.parseSize(maxIo);
        } catch (IllegalArgumentException e) {
            b = -1;
        }
        if (b < 4096 || b > (1 << 20) || Long.bitCount(b) != 1) {
            throw new IllegalArgumentException("--max-io " + maxIo + " is not a power of two from 4K to 1M; use e.g. 512K or 1M");
        }
        return (int) b;
    }

    private int foreground(MirrorConfig cfg) throws Exception {
        Daemon d = Daemon.start(cfg, org.ublkmirror.link.LinkConfig.load(common.confDir(), name), frontend,
                new FrontendOptions(queues, depth, workers, !noRecover, zeroCopy.equals("auto"), maxIoBytes()), new Mirror.Options(), !noAutoResync, System.out);
        Runtime.getRuntime().addShutdownHook(new Thread(d::shutdown, "sigterm"));
        System.out.println("device " + (d.device() == null ? "(none)" : d.device()));
        System.out.flush();
        d.awaitStop();
        return 0;
    }

    private int spawn(MirrorConfig cfg) throws Exception {
        Path run = Daemon.runDir();
        Files.createDirectories(run);
        Path logFile = run.resolve(name + ".log");
        String java = ProcessHandle.current().info().command().orElse("java");
        List<String> cmd = new ArrayList<>();
        if (Files.isExecutable(Path.of("/usr/bin/setsid"))) cmd.add("/usr/bin/setsid");
        cmd.addAll(List.of(java, "-Xms" + heap, "-Xmx" + heap, "-XX:+AlwaysPreTouch", "-XX:+UseSerialGC", "-XX:MaxDirectMemorySize=512m",
                "-cp", System.getProperty("java.class.path"), Mirrorctl.class.getName(), "start", name, "--foreground",
                "--frontend", frontend));
        if (noAutoResync) cmd.add("--no-auto-resync");
        if (queues > 0) cmd.addAll(List.of("--queues", String.valueOf(queues)));
        if (depth > 0) cmd.addAll(List.of("--depth", String.valueOf(depth)));
        if (workers > 0) cmd.addAll(List.of("--workers", String.valueOf(workers)));
        if (maxIo != null) cmd.addAll(List.of("--max-io", String.valueOf(maxIoBytes())));
        if (noRecover) cmd.add("--no-recover");
        if (!zeroCopy.equals("auto")) cmd.addAll(List.of("--zero-copy", zeroCopy));
        if (common.confDir != null) cmd.addAll(List.of("--conf-dir", common.confDir.toString()));
        ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(true)
                .redirectOutput(ProcessBuilder.Redirect.to(logFile.toFile())).redirectInput(ProcessBuilder.Redirect.from(new File("/dev/null")));
        Process p = pb.start();
        long deadline = System.currentTimeMillis() + 300_000; // a TCG guest under load: JVM start + recovery
        while (System.currentTimeMillis() < deadline) {
            if (!p.isAlive()) {
                String out = Files.exists(logFile) ? Files.readString(logFile).trim() : "";
                String last = out.isEmpty() ? "daemon exited with " + p.exitValue() : out.substring(out.lastIndexOf('\n') + 1);
                throw new Mirrorctl.Failure(p.exitValue() == 0 ? Mirrorctl.IO : p.exitValue(), last.replaceFirst("^mirrorctl: ", ""));
            }
            if (ControlClient.running(name)) {
                Map<String, Object> st = Control.tryStatus(name);
                if (st != null) {
                    String log = Files.readString(logFile);
                    for (String line : log.split("\n")) {
                        if (line.startsWith("recovery:") || line.startsWith("frontend auto") || line.startsWith("secondary") || line.startsWith("ublk:")) System.err.println(line);
                    }
                    Object dev = st.get("device");
                    System.out.println(dev == null ? "(no device: --frontend none)" : dev);
                    return 0;
                }
            }
            Thread.sleep(100);
        }
        p.destroy();
        throw new Mirrorctl.Failure(Mirrorctl.IO, "daemon did not come up within 300 s; see " + logFile);
    }
}
