package org.ublkmirror.cli;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.ublkmirror.mirror.Mirror;
import org.ublkmirror.mirror.MirrorConfig;

import java.io.BufferedReader;
import java.io.ByteArrayOutputStream;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.*;

/**
 * mirrorctl log-receiver as a process, a mirror shipping to it, and mirrorctl log --from reading
 * it back: by name, by volume UUID without any configuration, the listing; a restart keeps the
 * logs; bad input is one line and a non-zero exit.
 */
class LogShipCmdTest {
    static final long T0 = 1_800_000_000_000L;

    @TempDir
    Path dir;
    final List<Process> procs = new ArrayList<>();

    record Run(int code, String out, String err) {
    }

    @AfterEach
    void stop() throws Exception {
        for (Process p : procs) {
            p.destroy(); // SIGTERM, as an operator stops it
            if (!p.waitFor(10, TimeUnit.SECONDS)) p.destroyForcibly();
        }
    }

    Run ctl(String... args) {
        PrintStream oldOut = System.out, oldErr = System.err;
        ByteArrayOutputStream out = new ByteArrayOutputStream(), err = new ByteArrayOutputStream();
        System.setOut(new PrintStream(out, true, StandardCharsets.UTF_8));
        System.setErr(new PrintStream(err, true, StandardCharsets.UTF_8));
        int code;
        try {
            code = Mirrorctl.commandLine().setErr(new java.io.PrintWriter(System.err, true)).execute(args);
        } finally {
            System.setOut(oldOut);
            System.setErr(oldErr);
        }
        return new Run(code, out.toString(StandardCharsets.UTF_8), err.toString(StandardCharsets.UTF_8));
    }

    static void assertOneLine(Run r) {
        assertEquals(1, r.err().strip().lines().count(), "expected one line on stderr: " + r.err());
        assertTrue(r.err().startsWith("mirrorctl: "), r.err());
    }

    /** Starts mirrorctl log-receiver; returns its port once it says it is receiving. */
    int receiver(Path rdir, int port) throws Exception {
        List<String> cmd = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "-cp", System.getProperty("java.class.path"), Mirrorctl.class.getName(),
                "log-receiver", "--listen", "127.0.0.1:" + port, "--dir", rdir.toString()));
        Process p = new ProcessBuilder(cmd).redirectError(dir.resolve("receiver.err").toFile()).start();
        procs.add(p);
        BufferedReader r = new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8));
        String line = r.readLine();
        assertNotNull(line, "log-receiver printed nothing; stderr: " + Files.readString(dir.resolve("receiver.err")));
        Matcher m = Pattern.compile("receiving tracking logs on 127\\.0\\.0\\.1:(\\d+) into .*").matcher(line);
        assertTrue(m.matches(), line);
        return Integer.parseInt(m.group(1));
    }

    static int freePort() throws Exception {
        try (ServerSocket s = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
            return s.getLocalPort();
        }
    }

    static void write(Mirror m, long block, int blocks) throws Exception {
        ByteBuffer b = ByteBuffer.allocateDirect(blocks * 4096);
        while (b.hasRemaining()) b.put((byte) (block + b.position()));
        b.flip();
        m.write(block * 4096, b, false);
    }

    @Test
    void shippedLogIsReadBackFromTheReceiverByNameAndVolume() throws Exception {
        Path conf = dir.resolve("conf"), rdir = dir.resolve("received");
        int port = receiver(rdir, 0);
        Run c = ctl("create", "db1", "--primary", dir.resolve("p.img").toString(), "--secondary", dir.resolve("s.img").toString(),
                "--size", "64M", "--ship-to", "127.0.0.1:" + port, "--conf-dir", conf.toString());
        assertEquals(0, c.code(), c.err());
        assertTrue(c.out().contains("tracking log shipped to log receiver 127.0.0.1:" + port), c.out());
        assertEquals("", c.err(), "the receiver is reachable and holds no other db1: no warning");
        MirrorConfig cfg = MirrorConfig.load(conf, "db1");
        assertEquals("127.0.0.1:" + port, cfg.shipTo().address());

        // the mirror runs (in this JVM, with a clock the test sets), is detached and written
        AtomicLong clock = new AtomicLong(T0);
        Mirror.Options o = new Mirror.Options();
        o.clock = clock::get;
        Mirror m = Mirror.open(cfg, o);
        String volume = m.primary().superblock().volumeUuid.toString();
        m.detach();
        clock.set(T0 + 5_000);
        write(m, 10, 4);
        clock.set(T0 + 125_000);
        write(m, 2000, 16);
        write(m, 12, 4); // adjacent to 10..13 but in a later epoch
        m.close(); // the final persist is shipped before close returns (bounded wait)

        String from = "127.0.0.1:" + port;
        Run log = ctl("log", "db1", "--from", from, "--json", "--conf-dir", conf.toString());
        assertEquals(0, log.code(), log.err());
        String j = log.out();
        assertTrue(j.contains("\"volume\": \"" + volume + "\""), j);
        assertTrue(j.contains("\"dirty_blocks\": 22"), j);
        // exactly the written ranges, each with its times
        assertRange(j, 10, 2, T0 + 5_000, T0 + 5_000);
        assertRange(j, 12, 2, T0 + 5_000, T0 + 125_000);
        assertRange(j, 14, 2, T0 + 125_000, T0 + 125_000);
        assertRange(j, 2000, 16, T0 + 125_000, T0 + 125_000);
        assertEquals(4, count(j, "\"start_block\""), j);

        // the primary host and its configuration are gone: by volume UUID, with a time window
        Run byVol = ctl("log", "--from", from, "--volume", volume, "--since", iso(T0 + 100_000), "--json");
        assertEquals(0, byVol.code(), byVol.err());
        assertEquals(2, count(byVol.out(), "\"start_block\""), byVol.out());
        assertRange(byVol.out(), 12, 4, T0 + 125_000, T0 + 125_000); // blocks 10, 11 were written before --since only
        assertRange(byVol.out(), 2000, 16, T0 + 125_000, T0 + 125_000);
        Run text = ctl("log", "--from", from, "--volume", volume);
        assertEquals(0, text.code(), text.err());
        assertTrue(text.out().startsWith("mirror db1, volume " + volume + ": seq "), text.out());
        assertTrue(text.out().contains("tracking log (log receiver " + from + "): 22 dirty block(s); 4 range(s)"), text.out());

        Run list = ctl("log", "--from", from, "--list", "--json");
        assertEquals(0, list.code(), list.err());
        assertTrue(list.out().contains("\"name\": \"db1\"") && list.out().contains("\"volume\": \"" + volume + "\"")
                && list.out().contains("\"dirty_blocks\": 22"), list.out());

        // the receiver restarts on the same directory: the log is still there
        Process first = procs.remove(0);
        first.destroy();
        assertTrue(first.waitFor(10, TimeUnit.SECONDS));
        assertEquals(143, first.exitValue(), "SIGTERM ends the receiver");
        receiver(rdir, port);
        Run again = ctl("log", "--from", from, "--volume", volume, "--json");
        assertEquals(0, again.code(), again.err());
        assertEquals(j.substring(j.indexOf("\"ranges\"")), again.out().substring(again.out().indexOf("\"ranges\"")));

        // a new mirror under the same name (another volume): create warns that the receiver will refuse it
        Run c2 = ctl("create", "db1", "--primary", dir.resolve("p2.img").toString(), "--secondary", dir.resolve("s2.img").toString(),
                "--size", "16M", "--ship-to", from, "--conf-dir", conf.toString(), "--force");
        assertEquals(0, c2.code(), c2.err());
        assertTrue(c2.err().startsWith("mirrorctl: warning: log receiver " + from + " holds a log of another mirror named 'db1'"), c2.err());
        // TLS files of the shipping configuration gone: offline status and log still read the primary
        Path gone = dir.resolve("gone.p12");
        MirrorConfig.load(conf, "db1").withShipTo(new org.ublkmirror.logship.ShipTarget(from, gone, gone, gone)).save(conf);
        Run st = ctl("status", "db1", "--json", "--conf-dir", conf.toString());
        assertEquals(0, st.code(), st.err());
        assertTrue(st.out().contains("\"ship_to\": \"" + from + "\""), st.out());
        assertEquals(0, ctl("log", "db1", "--conf-dir", conf.toString()).code());
    }

    static String iso(long ms) {
        return java.time.LocalDateTime.ofInstant(java.time.Instant.ofEpochMilli(ms), java.time.ZoneId.systemDefault()).toString();
    }

    static int count(String s, String what) {
        int n = 0;
        for (int i = s.indexOf(what); i >= 0; i = s.indexOf(what, i + 1)) n++;
        return n;
    }

    static void assertRange(String json, long start, long blocks, long first, long last) {
        Pattern p = Pattern.compile("\"start_block\": " + start + ",\\s*\"blocks\": " + blocks + ",\\s*\"first_written\": \"[^\"]*\",\\s*"
                + "\"last_written\": \"[^\"]*\",\\s*\"first_written_ms\": " + first + ",\\s*\"last_written_ms\": " + last);
        assertTrue(p.matcher(json).find(), "range " + start + "+" + blocks + " written " + first + ".." + last + " in " + json);
    }

    @Test
    void badInputIsOneLineAndANonZeroExit() throws Exception {
        int dead = freePort();
        Run r = ctl("log", "db1", "--from", "127.0.0.1:" + dead, "--conf-dir", dir.toString());
        assertEquals(Mirrorctl.IO, r.code());
        assertOneLine(r);
        assertTrue(r.err().contains("cannot reach log receiver 127.0.0.1:" + dead) && r.err().contains("mirrorctl log-receiver"), r.err());

        Path rdir = dir.resolve("received");
        int port = receiver(rdir, 0);
        r = ctl("log", "nosuch", "--from", "127.0.0.1:" + port, "--conf-dir", dir.toString());
        assertEquals(Mirrorctl.BAD_INPUT, r.code());
        assertOneLine(r);
        assertTrue(r.err().contains("holds no tracking log of mirror 'nosuch'") && r.err().contains("--list"), r.err());

        r = ctl("log", "--from", "127.0.0.1:" + port, "--volume", "not-a-uuid");
        assertEquals(Mirrorctl.BAD_INPUT, r.code());
        assertOneLine(r);
        assertTrue(r.err().contains("--volume not-a-uuid is not a UUID"), r.err());

        r = ctl("log", "--from", "127.0.0.1:" + port);
        assertEquals(Mirrorctl.BAD_INPUT, r.code());
        assertOneLine(r);

        r = ctl("log", "--from", "127.0.0.1:port", "--list");
        assertEquals(Mirrorctl.BAD_INPUT, r.code());
        assertOneLine(r);

        r = ctl("log", "--volume", "00112233-4455-6677-8899-aabbccddeeff");
        assertEquals(Mirrorctl.BAD_INPUT, r.code());
        assertOneLine(r);
        assertTrue(r.err().contains("give --from HOST:PORT"), r.err());

        // create with a bad --ship-to writes nothing
        r = ctl("create", "x", "--primary", dir.resolve("xp.img").toString(), "--secondary", dir.resolve("xs.img").toString(),
                "--size", "16M", "--ship-to", "127.0.0.1:99999", "--conf-dir", dir.resolve("conf").toString());
        assertEquals(Mirrorctl.BAD_INPUT, r.code());
        assertOneLine(r);
        assertFalse(Files.exists(dir.resolve("xp.img")) || Files.exists(dir.resolve("conf")), "nothing created");

        // a receiver that cannot start: its port is taken
        List<String> cmd = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "-cp", System.getProperty("java.class.path"), Mirrorctl.class.getName(),
                "log-receiver", "--listen", "127.0.0.1:" + port, "--dir", rdir.toString()));
        Process two = new ProcessBuilder(cmd).start();
        assertTrue(two.waitFor(60, TimeUnit.SECONDS));
        String err = new String(two.getErrorStream().readAllBytes(), StandardCharsets.UTF_8);
        assertEquals(Mirrorctl.IO, two.exitValue(), err);
        assertEquals(1, err.strip().lines().count(), err);
        assertTrue(err.contains("cannot listen on") && err.contains("--listen"), err);
    }
}
