package org.ublkmirror.it.mirror;

import org.ublkmirror.it.fuse.Root;
import org.ublkmirror.mirror.Inspect;
import org.ublkmirror.mirror.MirrorConfig;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * A mirror driven the way an operator drives it: the real mirrorctl (a separate JVM, the same
 * classpath as this test) with its own config and run directories. Cleans up everything it
 * made (mount, daemon, loop device, FUSE mount, files), also when the test fails.
 */
final class MirrorRig implements AutoCloseable {
    final Path dir;
    final Path conf;
    final Path run;
    final Path mnt;
    final String name;
    final List<Long> daemonPids = new ArrayList<>();
    /** How mirrorctl is run: as is, or e.g. inside a network namespace (NetNs.inClient). */
    java.util.function.UnaryOperator<List<String>> wrap = c -> c;

    record Result(int exit, String out, String err) {
    }

    MirrorRig(String name) throws IOException {
        Root.require("losetup", "mkfs.ext4", "e2fsck", "fio", "mount", "umount");
        this.name = name;
        this.dir = Files.createTempDirectory(Path.of("/var/tmp"), "mirror-it-");
        this.conf = dir.resolve("conf");
        this.run = dir.resolve("run");
        this.mnt = dir.resolve("mnt");
        Files.createDirectories(mnt);
    }

    Path primary() {
        return dir.resolve("primary.img");
    }

    Path secondary() {
        return dir.resolve("secondary.img");
    }

    Result ctl(String... args) throws IOException, InterruptedException {
        return ctl(300, args);
    }

    Result ctl(long timeoutSec, String... args) throws IOException, InterruptedException {
        List<String> cmd = new ArrayList<>(List.of(ProcessHandle.current().info().command().orElse("java"),
                "-cp", System.getProperty("java.class.path"), "org.ublkmirror.cli.Mirrorctl"));
        cmd.addAll(List.of(args));
        cmd = wrap.apply(cmd);
        ProcessBuilder pb = new ProcessBuilder(cmd);
        pb.environment().put("UBLK_MIRROR_CONF_DIR", conf.toString());
        pb.environment().put("UBLK_MIRROR_RUN_DIR", run.toString());
        Process p = pb.start();
        p.getOutputStream().close();
        ByteArrayOutputStream out = new ByteArrayOutputStream(), err = new ByteArrayOutputStream();
        Thread a = pump(p.getInputStream(), out), b = pump(p.getErrorStream(), err);
        if (!p.waitFor(timeoutSec, TimeUnit.SECONDS)) {
            p.destroyForcibly();
            fail("mirrorctl " + String.join(" ", args) + " timed out: " + out + err);
        }
        a.join(5000);
        b.join(5000);
        return new Result(p.exitValue(), out.toString(StandardCharsets.UTF_8), err.toString(StandardCharsets.UTF_8));
    }

    private static Thread pump(InputStream in, ByteArrayOutputStream to) {
        Thread t = new Thread(() -> {
            try (in) {
                in.transferTo(to);
            } catch (IOException ignored) {
                // ended
            }
        });
        t.start();
        return t;
    }

    /** Runs mirrorctl and asserts exit 0. */
    String ok(String... args) throws IOException, InterruptedException {
        Result r = ctl(args);
        assertEquals(0, r.exit(), () -> "mirrorctl " + String.join(" ", args) + " failed (" + r.exit() + "):\n" + r.out() + r.err());
        return r.out();
    }

    void create(String size) throws IOException, InterruptedException {
        ok("create", name, "--primary", primary().toString(), "--secondary", secondary().toString(), "--size", size,
                "--ship-dir", dir.resolve("ship").toString());
    }

    /** Starts the daemon; returns the device. */
    Path start() throws IOException, InterruptedException {
        String dev = ok("start", name, "--frontend", "fuse").trim();
        long pid = Long.parseLong(Files.readString(run.resolve(name + ".pid")).trim());
        daemonPids.add(pid);
        return Path.of(dev.lines().reduce((x, y) -> y).orElseThrow());
    }

    long daemonPid() throws IOException {
        return Long.parseLong(Files.readString(run.resolve(name + ".pid")).trim());
    }

    void mount(Path dev) throws IOException, InterruptedException {
        Root.sh("mount", dev.toString(), mnt.toString());
    }

    /** The daemon's recent log lines (what start printed before detaching). */
    String daemonLog() throws IOException {
        Path l = run.resolve(name + ".log");
        return Files.exists(l) ? Files.readString(l) : "";
    }

    /** Both legs' data areas, hashed, read directly (the mirror must be stopped or quiet). */
    String[] legHashes() throws Exception {
        MirrorConfig cfg = MirrorConfig.load(conf, name);
        try (Inspect in = Inspect.open(cfg)) {
            return new String[] {hash(in.primary.data()), in.secondary == null ? null : hash(in.secondary.data())};
        }
    }

    static String hash(org.ublkmirror.leg.BlockIO io) throws Exception {
        MessageDigest md = MessageDigest.getInstance("SHA-256");
        ByteBuffer b = ByteBuffer.allocate(1 << 20);
        long per = b.capacity() / io.blockSize();
        for (long blk = 0; blk < io.blockCount(); blk += per) {
            long n = Math.min(per, io.blockCount() - blk);
            b.clear().limit((int) (n * io.blockSize()));
            io.read(blk, b);
            b.flip();
            md.update(b);
        }
        return HexFormat.of().formatHex(md.digest());
    }

    static String sha256(Path f) throws Exception {
        MessageDigest md = MessageDigest.getInstance("SHA-256");
        md.update(Files.readAllBytes(f));
        return HexFormat.of().formatHex(md.digest());
    }

    @Override
    public void close() {
        Root.umountQuietly(mnt);
        try {
            if (Files.exists(run.resolve(name + ".sock"))) ctl(120, "stop", name, "--force");
        } catch (Exception | AssertionError e) {
            System.err.println("cleanup: stop: " + e);
        }
        for (long pid : daemonPids) {
            ProcessHandle.of(pid).ifPresent(h -> {
                h.destroyForcibly();
                try {
                    h.onExit().get(30, TimeUnit.SECONDS);
                } catch (Exception e) {
                    System.err.println("cleanup: daemon " + pid + ": " + e);
                }
            });
        }
        // a killed daemon leaves a dead FUSE mount and a loop device on it
        Path fuse = run.resolve(name + ".fuse");
        try {
            if (Files.exists(Path.of("/sys/block"))) {
                try (var s = Files.list(Path.of("/sys/block"))) {
                    for (Path p : (Iterable<Path>) s::iterator) {
                        Path bf = p.resolve("loop/backing_file");
                        if (Files.exists(bf) && Files.readString(bf).trim().startsWith(fuse.toString())) {
                            Root.run(60, "losetup", "-d", "/dev/" + p.getFileName());
                        }
                    }
                }
            }
        } catch (Exception e) {
            System.err.println("cleanup: loop: " + e);
        }
        Root.umountQuietly(fuse);
        Root.deleteTree(dir);
    }
}
