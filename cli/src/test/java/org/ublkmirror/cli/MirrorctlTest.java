package org.ublkmirror.cli;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.ublkmirror.mirror.Mirror;
import org.ublkmirror.mirror.MirrorConfig;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.io.RandomAccessFile;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/**
 * mirrorctl's offline commands as an operator meets them: exit codes, one-line errors, JSON,
 * and no byte of either leg changed by a command that failed or only reads.
 */
class MirrorctlTest {
    @TempDir
    Path dir;
    Path conf;
    PrintStream oldOut, oldErr;
    ByteArrayOutputStream out, err;

    record Run(int code, String out, String err) {
    }

    @BeforeEach
    void setUp() {
        conf = dir.resolve("conf");
        oldOut = System.out;
        oldErr = System.err;
    }

    @AfterEach
    void tearDown() {
        System.setOut(oldOut);
        System.setErr(oldErr);
    }

    Run ctl(String... args) {
        out = new ByteArrayOutputStream();
        err = new ByteArrayOutputStream();
        System.setOut(new PrintStream(out, true, StandardCharsets.UTF_8));
        System.setErr(new PrintStream(err, true, StandardCharsets.UTF_8));
        List<String> a = new ArrayList<>(List.of(args));
        if (a.size() > 0 && !a.get(0).equals("doctor")) a.addAll(List.of("--conf-dir", conf.toString()));
        int code;
        try {
            code = Mirrorctl.commandLine().setErr(new java.io.PrintWriter(System.err, true)).execute(a.toArray(String[]::new));
        } finally {
            System.setOut(oldOut);
            System.setErr(oldErr);
        }
        return new Run(code, out.toString(StandardCharsets.UTF_8), err.toString(StandardCharsets.UTF_8));
    }

    Path p() {
        return dir.resolve("p.img");
    }

    Path s() {
        return dir.resolve("s.img");
    }

    Run create(String name, Path pr, Path se, String... extra) {
        List<String> a = new ArrayList<>(List.of("create", name, "--primary", pr.toString(), "--secondary", se.toString()));
        a.addAll(List.of(extra));
        return ctl(a.toArray(String[]::new));
    }

    static String sha(Path f) throws Exception {
        return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(Files.readAllBytes(f)));
    }

    static void assertOneLine(Run r) {
        assertEquals(1, r.err().strip().lines().count(), "expected one line on stderr: " + r.err());
        assertTrue(r.err().startsWith("mirrorctl: "), r.err());
    }

    @Test
    void createMakesSparseLegsAndStatusReadsThem() throws Exception {
        Run c = create("m", p(), s(), "--size", "64M");
        assertEquals(0, c.code(), c.err());
        assertTrue(c.out().contains("64.0 MiB volume"), c.out());
        Process stat = new ProcessBuilder("stat", "-c", "%b", p().toString()).start();
        long allocated = Long.parseLong(new String(stat.getInputStream().readAllBytes()).trim()) * 512;
        assertTrue(allocated < (8 << 20), "leg file is not sparse: " + allocated + " bytes allocated");
        Run st = ctl("status", "m", "--json");
        assertEquals(0, st.code(), st.err());
        assertTrue(st.out().contains("\"state\": \"clean\""), st.out());
        assertTrue(st.out().contains("\"blocks\": 16384"), st.out());
        Run doctor = ctl("doctor", "--json");
        assertTrue(doctor.out().contains("\"name\": \"fuse\""), doctor.out());
    }

    @Test
    void createRefusesLegsHoldingDataOrMetadataUnlessForced() throws Exception {
        assertEquals(0, create("m", p(), s(), "--size", "64M").code());
        String before = sha(p()) + sha(s());
        Run again = create("m2", p(), s(), "--size", "64M");
        assertEquals(3, again.code());
        assertOneLine(again);
        assertTrue(again.err().contains("already holds ublk-mirror metadata") && again.err().contains("--force"), again.err());
        assertEquals(before, sha(p()) + sha(s()), "a refused create changed a leg");

        Path data = dir.resolve("data.img");
        try (RandomAccessFile f = new RandomAccessFile(data.toFile(), "rw")) {
            f.setLength(80 << 20);
            f.seek(1080);
            f.write(new byte[] {0x53, (byte) 0xef}); // looks like a file system
        }
        Path fresh = dir.resolve("fresh.img");
        Run r = create("d", data, fresh, "--size", "64M");
        assertEquals(3, r.code());
        assertTrue(r.err().contains("already holds data"), r.err());
        assertFalse(Files.exists(fresh), "a failed create must not leave a new leg file behind");
        assertEquals(0, create("d", data, fresh, "--size", "64M", "--force").code());
    }

    @Test
    void badInputGetsOneLineAndANonZeroExit() throws Exception {
        Run noSize = create("m", p(), s());
        assertEquals(3, noSize.code());
        assertOneLine(noSize);
        assertTrue(noSize.err().contains("give --size"), noSize.err());
        Run badSize = create("m", p(), s(), "--size", "lots");
        assertEquals(3, badSize.code());
        assertTrue(badSize.err().contains("is not a size"), badSize.err());
        Run same = create("m", p(), p(), "--size", "64M");
        assertEquals(3, same.code());
        assertTrue(same.err().contains("same file"), same.err());
        Run badName = create("a/b", p(), s(), "--size", "64M");
        assertEquals(3, badName.code());
        Run unknown = ctl("status", "nosuch");
        assertEquals(3, unknown.code());
        assertOneLine(unknown);
        assertTrue(unknown.err().contains("no mirror named 'nosuch'"), unknown.err());
        Run notRunning = ctl("detach", "nosuch");
        assertEquals(3, notRunning.code());
        assertEquals(2, ctl("status").code(), "missing NAME is a usage error");
    }

    @Test
    void corruptForeignAndMismatchedLegsAreNamedAndNothingChanges() throws Exception {
        assertEquals(0, create("m", p(), s(), "--size", "64M").code());
        Path p2 = dir.resolve("p2.img"), s2 = dir.resolve("s2.img");
        assertEquals(0, create("other", p2, s2, "--size", "64M").code());
        // foreign: m's config now names other's secondary
        Path cf = conf.resolve("m.conf");
        String orig = Files.readString(cf);
        Files.writeString(cf, orig.replace(s().toString(), s2.toString()));
        String before = sha(p()) + sha(s2);
        for (String cmd : new String[] {"status", "verify", "tags", "reconcile"}) {
            Run r = ctl(cmd, "m");
            assertEquals(3, r.code(), cmd + ": " + r.err());
            assertOneLine(r);
            assertTrue(r.err().contains("belongs to another mirror"), cmd + ": " + r.err());
        }
        assertEquals(before, sha(p()) + sha(s2), "a refused command changed a leg");
        Files.writeString(cf, orig);

        // mismatched: a secondary of another size from the same mirror cannot exist; a smaller file can
        Path small = dir.resolve("small.img");
        Files.copy(s(), small);
        try (RandomAccessFile f = new RandomAccessFile(small.toFile(), "rw")) {
            f.setLength(f.length() / 2);
        }
        Files.writeString(cf, orig.replace(s().toString(), small.toString()));
        Run trunc = ctl("status", "m");
        assertEquals(3, trunc.code());
        assertTrue(trunc.err().contains("truncated"), trunc.err());
        Files.writeString(cf, orig);

        // corrupt: both superblock copies of the primary damaged
        try (RandomAccessFile f = new RandomAccessFile(p().toFile(), "rw")) {
            for (long off : new long[] {40, 4096 + 40}) {
                f.seek(off);
                int b = f.read();
                f.seek(off);
                f.write(b ^ 0x5a); // flip, never set: the byte is random
            }
        }
        String corrupt = sha(p()) + sha(s());
        for (String cmd : new String[] {"status", "verify", "log", "tags", "reconcile"}) {
            Run r = ctl(cmd, "m");
            assertEquals(3, r.code(), cmd + ": " + r.err());
            assertOneLine(r);
            assertTrue(r.err().contains("both superblock copies are corrupt"), cmd + ": " + r.err());
        }
        assertEquals(corrupt, sha(p()) + sha(s()), "a refused command changed a leg");
        // a missing leg file
        Files.delete(s2);
        Run missing = ctl("verify", "other");
        assertNotEquals(0, missing.code());
        assertOneLine(missing);
    }

    @Test
    void verifyNamesDifferingRangesAndReconcileRepairsACrash() throws Exception {
        assertEquals(0, create("m", p(), s(), "--size", "64M").code());
        Run same = ctl("verify", "m");
        assertEquals(0, same.code(), same.err());
        assertTrue(same.out().contains("legs identical"), same.out());

        MirrorConfig cfg = MirrorConfig.load(conf, "m");
        long dataOffset;
        // a daemon crash with writes in flight: the mirror is abandoned without a clean close
        Mirror.Options o = new Mirror.Options();
        o.watermarkTickMillis = 0;
        try (Mirror m = Mirror.open(cfg, o)) {
            dataOffset = m.primary().superblock().dataOffset;
            ByteBuffer b = ByteBuffer.allocateDirect(8192);
            b.put(0, (byte) 1);
            m.write(4096L * 100, b, false);
            m.abandon();
        }
        // now make the secondary miss block 100 and a range 200-202, as an unlucky crash would
        try (RandomAccessFile f = new RandomAccessFile(s().toFile(), "rw")) {
            f.seek(dataOffset + 4096L * 100);
            f.write(new byte[4096]);
            f.seek(dataOffset + 4096L * 200);
            f.write(new byte[] {9, 9, 9});
            f.seek(dataOffset + 4096L * 202);
            f.write(new byte[] {9});
        }
        Run diff = ctl("verify", "m", "--json");
        assertEquals(1, diff.code(), diff.out() + diff.err());
        assertTrue(diff.out().contains("\"start_block\": 100"), diff.out());
        assertTrue(diff.out().contains("\"start_block\": 200"), diff.out());
        assertTrue(diff.out().contains("\"start_block\": 202"), diff.out());
        Run text = ctl("verify", "m");
        assertTrue(text.out().contains("blocks 100-100") && text.out().contains("legs DIFFER"), text.out());

        Run tags = ctl("tags", "m", "--json");
        assertEquals(0, tags.code(), tags.err());
        assertTrue(tags.out().contains("\"start_block\": 100") && tags.out().contains("\"on\": \"both\""), tags.out());

        Run rec = ctl("reconcile", "m");
        assertEquals(0, rec.code(), rec.err());
        assertTrue(rec.out().contains("daemon-crash") && rec.out().contains("repaired 2 block(s)"), rec.out());
        // the tag table repaired the in-flight write; 200 and 202 were not tagged (not a crash): verify still names them
        Run after = ctl("verify", "m", "--json");
        assertEquals(1, after.code());
        assertFalse(after.out().contains("\"start_block\": 100,"), after.out());
        assertTrue(after.out().contains("\"start_block\": 200"), after.out());
        Run log = ctl("log", "m", "--json");
        assertEquals(0, log.code(), log.err());
        assertTrue(log.out().contains("\"dirty_blocks\": 0"), log.out());
    }
}
