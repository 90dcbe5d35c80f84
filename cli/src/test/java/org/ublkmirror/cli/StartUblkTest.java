package org.ublkmirror.cli;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.io.PrintWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.util.HexFormat;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeFalse;

/**
 * `mirrorctl start --frontend ublk` on a kernel without ublk (this project's host kind; the
 * ublk path itself runs in the VM: tests/vm/ublk-mirror-smoke.sh): one line saying what to do,
 * exit 4, no byte of either leg changed. Bad --queues/--depth/--max-io/--workers/--zero-copy: exit 3, one line.
 */
class StartUblkTest {
    @TempDir
    Path dir;
    String name = "ublktest-" + ProcessHandle.current().pid();

    record Run(int code, String out, String err) {
    }

    Run ctl(String... args) {
        PrintStream oldOut = System.out, oldErr = System.err;
        ByteArrayOutputStream out = new ByteArrayOutputStream(), err = new ByteArrayOutputStream();
        System.setOut(new PrintStream(out, true, StandardCharsets.UTF_8));
        System.setErr(new PrintStream(err, true, StandardCharsets.UTF_8));
        String[] a = java.util.stream.Stream.concat(java.util.Arrays.stream(args),
                java.util.stream.Stream.of("--conf-dir", dir.resolve("conf").toString())).toArray(String[]::new);
        int code;
        try {
            code = Mirrorctl.commandLine().setErr(new PrintWriter(System.err, true)).execute(a);
        } finally {
            System.setOut(oldOut);
            System.setErr(oldErr);
        }
        return new Run(code, out.toString(StandardCharsets.UTF_8), err.toString(StandardCharsets.UTF_8));
    }

    static String sha(Path f) throws Exception {
        return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(Files.readAllBytes(f)));
    }

    @AfterEach
    void cleanRunDir() throws Exception {
        Path run = org.ublkmirror.daemon.Daemon.runDir();
        for (String ext : new String[] {".lock", ".sock", ".pid", ".device", ".ublk"}) Files.deleteIfExists(run.resolve(name + ext));
    }

    @Test
    void ublkMissingIsOneLineExit4AndChangesNothing() throws Exception {
        assumeFalse(Files.exists(Path.of("/dev/ublk-control")), "this kernel has ublk: the refusal is tested on kernels without it");
        Path p = dir.resolve("p.img"), s = dir.resolve("s.img");
        assertEquals(0, ctl("create", name, "--primary", p.toString(), "--secondary", s.toString(), "--size", "16M").code());
        String before = sha(p) + sha(s);
        Run r = ctl("start", name, "--frontend", "ublk", "--foreground");
        assertEquals(4, r.code(), r.out() + r.err());
        assertEquals(1, r.err().strip().lines().count(), r.err());
        assertTrue(r.err().startsWith("mirrorctl: ublk is not available: "), r.err());
        assertTrue(r.err().contains("--frontend fuse"), r.err());
        assertTrue(r.out().isEmpty(), "no device path printed: " + r.out());
        assertEquals(before, sha(p) + sha(s), "a refused start changed a leg");

        Run q = ctl("start", name, "--frontend", "ublk", "--queues", "33", "--foreground");
        assertEquals(3, q.code());
        assertTrue(q.err().contains("--queues 33 is out of range"), q.err());
        assertEquals(before, sha(p) + sha(s));

        Run w = ctl("start", name, "--frontend", "ublk", "--workers", "2000", "--foreground");
        assertEquals(3, w.code(), w.out() + w.err());
        assertEquals("mirrorctl: --workers 2000 is out of range; use 1..1024", w.err().strip());
        assertEquals(before, sha(p) + sha(s), "a refused start changed a leg");

        for (String bad : new String[] {"768K", "2M", "1k", "lots"}) {
            Run m = ctl("start", name, "--frontend", "ublk", "--max-io", bad, "--foreground");
            assertEquals(3, m.code(), m.out() + m.err());
            assertEquals("mirrorctl: --max-io " + bad + " is not a power of two from 4K to 1M; use e.g. 512K or 1M", m.err().strip());
            assertTrue(m.out().isEmpty(), m.out());
        }
        assertEquals(before, sha(p) + sha(s), "a refused start changed a leg");

        Run z = ctl("start", name, "--frontend", "ublk", "--zero-copy", "always", "--foreground");
        assertEquals(3, z.code(), z.out() + z.err());
        assertEquals("mirrorctl: --zero-copy always is unknown; use auto or off", z.err().strip());
        assertTrue(z.out().isEmpty(), z.out());
        assertEquals(before, sha(p) + sha(s), "a refused start changed a leg");
    }
}
