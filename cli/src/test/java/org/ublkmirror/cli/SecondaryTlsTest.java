package org.ublkmirror.cli;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.ublkmirror.gateway.Export;
import org.ublkmirror.gateway.NbdServer;
import org.ublkmirror.gateway.Tls;
import org.ublkmirror.leg.FileStore;
import org.ublkmirror.mirror.Mirror;
import org.ublkmirror.mirror.MirrorConfig;
import org.ublkmirror.mirror.ResyncRunner;

import javax.net.ssl.SSLContext;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.net.InetSocketAddress;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.UUID;

import static org.junit.jupiter.api.Assertions.*;

/**
 * A mirror whose secondary is nbds:// (NBD over TLS) to an in-process gateway: mirrorctl create
 * takes the --secondary-tls-* files, the configuration keeps them, the engine uses them at open
 * and at every attach; bad TLS input is refused before any leg byte changes.
 */
class SecondaryTlsTest {
    static final String PW = "secret12";
    static final int BS = 4096;

    @TempDir
    Path dir;
    Path conf;
    PrintStream oldOut, oldErr;

    record Run(int code, String out, String err) {
    }

    @BeforeEach
    void certificates() throws Exception {
        conf = dir.resolve("conf");
        oldOut = System.out;
        oldErr = System.err;
        for (String n : new String[] {"gw", "pri", "rogue"}) {
            GatewayCmdTest.keytool("-genkeypair", "-alias", n, "-keyalg", "EC", "-groupname", "secp256r1", "-dname", "CN=" + n,
                    "-ext", "san=ip:127.0.0.1", "-validity", "2", "-storetype", "PKCS12",
                    "-keystore", dir.resolve(n + ".p12").toString(), "-storepass", PW, "-keypass", PW);
            GatewayCmdTest.keytool("-exportcert", "-alias", n, "-keystore", dir.resolve(n + ".p12").toString(), "-storepass", PW,
                    "-file", dir.resolve(n + ".crt").toString());
        }
        trust("gw-trust", "pri");     // the gateway accepts the mirror's certificate
        trust("pri-trust", "gw");     // the mirror accepts the gateway's certificate only
        trust("rogue-only", "rogue"); // a trust store that does not name the gateway
        Files.writeString(dir.resolve("pw"), PW + "\n");
        Files.writeString(dir.resolve("wrong-pw"), "not-the-password\n");
    }

    @AfterEach
    void restore() {
        System.setOut(oldOut);
        System.setErr(oldErr);
    }

    void trust(String store, String cert) throws Exception {
        GatewayCmdTest.keytool("-importcert", "-noprompt", "-alias", cert, "-file", dir.resolve(cert + ".crt").toString(),
                "-storetype", "PKCS12", "-keystore", dir.resolve(store + ".p12").toString(), "-storepass", PW);
    }

    SSLContext server(String key) throws Exception {
        return Tls.context(dir.resolve(key + ".p12"), PW.toCharArray(), dir.resolve("gw-trust.p12"), PW.toCharArray());
    }

    Run ctl(String... args) {
        ByteArrayOutputStream out = new ByteArrayOutputStream(), err = new ByteArrayOutputStream();
        System.setOut(new PrintStream(out, true, StandardCharsets.UTF_8));
        System.setErr(new PrintStream(err, true, StandardCharsets.UTF_8));
        List<String> a = new ArrayList<>(List.of(args));
        a.addAll(List.of("--conf-dir", conf.toString()));
        int code;
        try {
            code = Mirrorctl.commandLine().setErr(new java.io.PrintWriter(System.err, true)).execute(a.toArray(String[]::new));
        } finally {
            System.setOut(oldOut);
            System.setErr(oldErr);
        }
        return new Run(code, out.toString(StandardCharsets.UTF_8), err.toString(StandardCharsets.UTF_8));
    }

    List<String> tlsArgs(String key, String trust, String pw) {
        return List.of("--secondary-tls-keystore", dir.resolve(key + ".p12").toString(),
                "--secondary-tls-truststore", dir.resolve(trust + ".p12").toString(),
                "--secondary-tls-password-file", dir.resolve(pw).toString());
    }

    Run create(String secondary, List<String> extra) {
        List<String> a = new ArrayList<>(List.of("create", "m", "--primary", dir.resolve("p.img").toString(),
                "--secondary", secondary, "--size", "4M"));
        a.addAll(extra);
        return ctl(a.toArray(String[]::new));
    }

    Path secondaryImage() throws Exception {
        Path s = dir.resolve("s.img");
        try (var f = new java.io.RandomAccessFile(s.toFile(), "rw")) {
            f.setLength(16 << 20);
        }
        return s;
    }

    static ByteBuffer block(Random r) {
        byte[] b = new byte[BS];
        r.nextBytes(b);
        return ByteBuffer.allocateDirect(BS).put(b).flip();
    }

    static byte[] data(org.ublkmirror.leg.Leg l, long blocks) throws Exception {
        ByteBuffer b = ByteBuffer.allocate((int) (blocks * BS));
        l.data().read(0, b);
        return b.array();
    }

    @Test
    void aMirrorWithAnNbdsSecondaryWritesBothLegsAndResyncsOverTls() throws Exception {
        Path s = secondaryImage();
        try (FileStore back = FileStore.open(s);
             NbdServer gw = NbdServer.start(new InetSocketAddress("127.0.0.1", 0), Map.of("sec", Export.of(back)), server("gw"))) {
            String url = "nbds://127.0.0.1:" + gw.port() + "/sec";
            Run c = create(url, tlsArgs("pri", "pri-trust", "pw"));
            assertEquals(0, c.code(), c.err());
            assertTrue(c.out().contains("secondary " + url + " (TLS)"), c.out());
            String saved = Files.readString(MirrorConfig.file(conf, "m"));
            assertTrue(saved.contains("secondary-tls-keystore") && saved.contains("secondary-tls-truststore")
                    && saved.contains("secondary-tls-password-file"), saved);
            MirrorConfig cfg = MirrorConfig.load(conf, "m");
            assertEquals(dir.resolve("pri-trust.p12").toAbsolutePath(), cfg.secondaryTls().trustStore());

            // the engine as the daemon opens it: no store opener, the configuration's TLS files
            Mirror.Options mo = new Mirror.Options();
            mo.bootId = UUID.randomUUID();
            mo.watermarkTickMillis = 0;
            mo.trackPersistMillis = 0;
            // as Daemon.start sets them from the link settings: timeouts without TLS, which the config's files add
            mo.remote = org.ublkmirror.gateway.NbdStore.Options.defaults().withIoTimeout(java.time.Duration.ofSeconds(5));
            Random r = new Random(42);
            long blocks;
            Mirror m = Mirror.open(cfg, mo);
            try {
                assertEquals(Mirror.State.MIRRORED, m.state(), "the secondary is reached over TLS at open");
                blocks = m.primary().superblock().dataBlocks;
                for (int i = 0; i < 64; i++) m.write((long) i * 3 * BS, block(r), false);
                m.flush();
                assertArrayEquals(data(m.primary(), blocks), data(m.secondary(), blocks), "writes reach both legs");

                m.detach();
                assertEquals(Mirror.State.DEGRADED, m.state());
                long[] written = {5, 6, 100, 101, 102, 103, 700};
                for (long b : written) m.write(b * BS, block(r), false);
                m.write(6 * BS, block(r), true); // a repeat: still one block to copy
                m.flush();
                assertEquals(written.length, m.dirtyBlocks());

                long dataOffset = m.primary().superblock().dataOffset;
                byte[] before = Arrays.copyOfRange(Files.readAllBytes(s), (int) dataOffset, (int) (dataOffset + blocks * BS));
                ResyncRunner run = m.attach(0, false);
                assertTrue(run.awaitDone(30_000), "resync finished");
                assertTrue(run.succeeded(), String.valueOf(run.failure()));
                assertEquals(written.length, run.copiedBlocks(), "resync copies exactly the tracked blocks");
                assertEquals(written.length, m.resyncedBlocks());
                assertEquals(Mirror.State.MIRRORED, m.state());
                byte[] after = Arrays.copyOfRange(Files.readAllBytes(s), (int) dataOffset, (int) (dataOffset + blocks * BS));
                for (long b = 0; b < blocks; b++) {
                    final long blk = b;
                    boolean tracked = Arrays.stream(written).anyMatch(w -> w == blk);
                    boolean changed = !Arrays.equals(before, (int) (b * BS), (int) ((b + 1) * BS), after, (int) (b * BS), (int) ((b + 1) * BS));
                    assertEquals(tracked, changed, "block " + b + (tracked ? " was tracked but not copied" : " changed but was not tracked"));
                }
                assertArrayEquals(data(m.primary(), blocks), data(m.secondary(), blocks), "legs identical after the resync over TLS");
            } finally {
                m.close();
            }

            // the TLS files are read again at every open and reconnect: a trust store that does not
            // name the gateway is refused, with the address and the reason
            Path trustFile = cfg.secondaryTls().trustStore();
            Path good = dir.resolve("pri-trust.saved");
            Files.copy(trustFile, good);
            Files.copy(dir.resolve("rogue-only.p12"), trustFile, StandardCopyOption.REPLACE_EXISTING);
            Mirror.Options strict = new Mirror.Options();
            strict.bootId = mo.bootId;
            strict.allowMissingSecondary = false;
            java.io.IOException atOpen = assertThrows(java.io.IOException.class, () -> Mirror.open(cfg, strict).close());
            assertTrue(atOpen.getMessage().contains(url) && atOpen.getMessage().contains("TLS handshake failed"), atOpen.getMessage());
            long dataOffset;
            Mirror m2 = Mirror.open(MirrorConfig.load(conf, "m"), mo);
            try {
                assertEquals(Mirror.State.DEGRADED, m2.state(), "an untrusted gateway is an unreachable secondary: degraded start");
                long[] written = {1, 2, 3, 1000};
                for (long b : written) m2.write(b * BS, block(r), true);
                m2.flush();
                assertEquals(written.length, m2.dirtyBlocks());
                java.io.IOException refused = assertThrows(java.io.IOException.class, () -> m2.attach(0, false));
                assertTrue(refused.getMessage().contains(url) && refused.getMessage().contains("TLS handshake failed"), refused.getMessage());
                assertEquals(Mirror.State.DEGRADED, m2.state());
                assertEquals(written.length, m2.dirtyBlocks(), "a refused attach loses no tracked block");
                Files.copy(good, trustFile, StandardCopyOption.REPLACE_EXISTING);
                ResyncRunner run = m2.attach(0, false); // the reconnect path: a new connection with the files as they are now
                assertTrue(run.awaitDone(30_000), "resync finished");
                assertTrue(run.succeeded(), String.valueOf(run.failure()));
                assertEquals(written.length, run.copiedBlocks(), "resync copies exactly the blocks written while degraded");
                assertEquals(Mirror.State.MIRRORED, m2.state());
                assertArrayEquals(data(m2.primary(), blocks), data(m2.secondary(), blocks), "legs identical after the reconnect over TLS");
                dataOffset = m2.primary().superblock().dataOffset;
            } finally {
                m2.close();
            }
            // byte-identical on disk: the primary file and the gateway's file behind nbds://
            byte[] pf = Files.readAllBytes(dir.resolve("p.img")), sf = Files.readAllBytes(s);
            assertArrayEquals(Arrays.copyOfRange(pf, (int) dataOffset, (int) (dataOffset + blocks * BS)),
                    Arrays.copyOfRange(sf, (int) dataOffset, (int) (dataOffset + blocks * BS)));
        }
    }

    @Test
    void badTlsInputIsOneLineAndTouchesNoLeg() throws Exception {
        Path s = secondaryImage();
        byte[] sBefore = Files.readAllBytes(s);
        try (FileStore back = FileStore.open(s);
             NbdServer gw = NbdServer.start(new InetSocketAddress("127.0.0.1", 0), Map.of("sec", Export.of(back)), server("gw"));
             FileStore rogueBack = FileStore.createSparse(dir.resolve("rogue.img"), 16 << 20);
             NbdServer rogue = NbdServer.start(new InetSocketAddress("127.0.0.1", 0), Map.of("sec", Export.of(rogueBack)), server("rogue"))) {
            String url = "nbds://127.0.0.1:" + gw.port() + "/sec";
            record Case(String secondary, List<String> args, int code, String[] words) {
            }
            List<Case> cases = List.of(
                    new Case(url, List.of(), Mirrorctl.BAD_INPUT, new String[] {"NBD over TLS", "--secondary-tls-keystore"}),
                    new Case(s.toString(), tlsArgs("pri", "pri-trust", "pw"), Mirrorctl.BAD_INPUT, new String[] {"need an nbds://"}),
                    new Case(url, List.of("--secondary-tls-keystore", dir.resolve("pri.p12").toString()), Mirrorctl.BAD_INPUT,
                            new String[] {"go together"}),
                    new Case(url, tlsArgs("missing", "pri-trust", "pw"), Mirrorctl.BAD_INPUT, new String[] {"missing.p12", "no such key store"}),
                    new Case(url, tlsArgs("pri", "pri-trust", "nope-pw"), Mirrorctl.BAD_INPUT, new String[] {"nope-pw", "no such password file"}),
                    new Case(url, tlsArgs("pri", "pri-trust", "wrong-pw"), Mirrorctl.BAD_INPUT, new String[] {"pri.p12", "wrong password"}),
                    // the gateway presents a certificate the mirror's trust store does not name
                    new Case("nbds://127.0.0.1:" + rogue.port() + "/sec", tlsArgs("pri", "pri-trust", "pw"), Mirrorctl.IO,
                            new String[] {"nbds://127.0.0.1:" + rogue.port() + "/sec", "TLS handshake failed"}));
            for (Case k : cases) {
                Run r = create(k.secondary(), k.args());
                String err = r.err().strip();
                assertEquals(k.code(), r.code(), k + ": " + err);
                assertFalse(err.contains("\n"), "one line: " + err);
                for (String w : k.words()) assertTrue(err.contains(w), k + ": " + err);
                assertFalse(Files.exists(MirrorConfig.file(conf, "m")), "no configuration saved: " + k);
                assertFalse(Files.exists(dir.resolve("p.img")), "no primary created: " + k);
                assertArrayEquals(sBefore, Files.readAllBytes(s), "no byte of the secondary changed: " + k);
            }
        }
    }
}
