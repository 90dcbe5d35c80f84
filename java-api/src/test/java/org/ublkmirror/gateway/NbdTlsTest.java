package org.ublkmirror.gateway;

import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.ublkmirror.leg.FaultyStore;
import org.ublkmirror.leg.Store;
import org.ublkmirror.leg.Stores;

import javax.net.ssl.SSLContext;
import javax.net.ssl.TrustManagerFactory;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.KeyStore;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.*;

/** STARTTLS with X.509 certificates on both sides; clients without a trusted certificate are refused. */
class NbdTlsTest {
    static final char[] PW = "changeit".toCharArray();
    static Path dir;

    static void keytool(String... args) throws Exception {
        List<String> cmd = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "keytool").toString()));
        cmd.addAll(List.of(args));
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        assertTrue(p.waitFor(60, TimeUnit.SECONDS), "keytool timed out");
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertEquals(0, p.exitValue(), "keytool " + cmd + ": " + out);
    }

    static void keypair(String name, String dname) throws Exception {
        keytool("-genkeypair", "-alias", name, "-keyalg", "EC", "-groupname", "secp256r1", "-dname", dname,
                "-ext", "san=ip:127.0.0.1,dns:localhost", "-validity", "2", "-storetype", "PKCS12",
                "-keystore", dir.resolve(name + ".p12").toString(), "-storepass", new String(PW), "-keypass", new String(PW));
        keytool("-exportcert", "-alias", name, "-keystore", dir.resolve(name + ".p12").toString(), "-storepass", new String(PW),
                "-rfc", "-file", dir.resolve(name + ".crt").toString());
    }

    static void trust(String store, String... certs) throws Exception {
        for (String c : certs) {
            keytool("-importcert", "-noprompt", "-alias", c, "-file", dir.resolve(c + ".crt").toString(), "-storetype", "PKCS12",
                    "-keystore", dir.resolve(store + ".p12").toString(), "-storepass", new String(PW));
        }
    }

    @BeforeAll
    static void certificates() throws Exception {
        dir = Files.createTempDirectory("nbd-tls");
        keypair("gateway", "CN=gateway");
        keypair("primary", "CN=primary");
        keypair("rogue", "CN=rogue");
        trust("gateway-trust", "primary");  // the gateway accepts the primary's certificate only
        trust("primary-trust", "gateway");  // the primary accepts the gateway's certificate only
        trust("rogue-trust", "gateway");
    }

    @AfterAll
    static void removeCertificates() throws IOException {
        if (dir == null) return;
        try (Stream<Path> s = Files.walk(dir)) {
            for (Path p : s.sorted(Comparator.reverseOrder()).toList()) Files.deleteIfExists(p);
        }
    }

    static SSLContext ctx(String key, String trust) throws IOException {
        return Tls.context(dir.resolve(key + ".p12"), PW, dir.resolve(trust + ".p12"), PW);
    }

    static NbdStore.Options tls(SSLContext c) {
        return NbdStore.Options.defaults().withTls(c);
    }

    @Test
    void aTrustedClientReadsAndWritesOverTls() throws Exception {
        FaultyStore back = new FaultyStore("sec", 4 << 20);
        byte[] d = new byte[256 << 10];
        new java.util.Random(5).nextBytes(d);
        try (NbdServer s = NbdServer.start(new java.net.InetSocketAddress("127.0.0.1", 0), Map.of("sec", Export.of(back)), ctx("gateway", "gateway-trust"))) {
            try (Store st = Stores.open("nbds://127.0.0.1:" + s.port() + "/sec", tls(ctx("primary", "primary-trust")))) {
                assertEquals("nbds://127.0.0.1:" + s.port() + "/sec", st.describe());
                st.write(8192, ByteBuffer.wrap(d), true);
                st.flush();
                ByteBuffer got = ByteBuffer.allocate(d.length);
                st.read(8192, got);
                assertArrayEquals(d, got.array());
            }
            assertArrayEquals(d, java.util.Arrays.copyOfRange(back.image(), 8192, 8192 + d.length), "the data reached the gateway's store");
        }
    }

    @Test
    void clientsWithoutAValidCertificateAreRefused() throws Exception {
        FaultyStore back = new FaultyStore("sec", 4 << 20);
        try (NbdServer s = NbdServer.start(new java.net.InetSocketAddress("127.0.0.1", 0), Map.of("sec", Export.of(back)), ctx("gateway", "gateway-trust"))) {
            int port = s.port();
            // a certificate the gateway does not trust
            IOException rogue = assertThrows(IOException.class,
                    () -> NbdStore.connect("127.0.0.1", port, "sec", tls(ctx("rogue", "rogue-trust"))).close());
            assertTrue(rogue.getMessage().contains("nbds://127.0.0.1:" + port + "/sec"), rogue.getMessage());
            // no certificate at all
            TrustManagerFactory tmf = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
            KeyStore ts = KeyStore.getInstance("PKCS12");
            try (var in = Files.newInputStream(dir.resolve("primary-trust.p12"))) {
                ts.load(in, PW);
            }
            tmf.init(ts);
            SSLContext noCert = SSLContext.getInstance("TLS");
            noCert.init(null, tmf.getTrustManagers(), null);
            assertThrows(IOException.class, () -> NbdStore.connect("127.0.0.1", port, "sec", tls(noCert)).close());
            // no TLS: every option is answered NBD_REP_ERR_TLS_REQD
            IOException plain = assertThrows(IOException.class, () -> NbdStore.connect("127.0.0.1", port, "sec").close());
            assertTrue(plain.getMessage().contains("requires TLS") && plain.getMessage().contains("NBD_REP_ERR_TLS_REQD"), plain.getMessage());
            // a client that does not trust the gateway's certificate gives up too
            IOException distrust = assertThrows(IOException.class,
                    () -> NbdStore.connect("127.0.0.1", port, "sec", tls(ctx("primary", "gateway-trust"))).close());
            assertTrue(distrust.getMessage().contains("TLS handshake failed"), distrust.getMessage());
            // none of them wrote anything, and the export is still free for the real primary
            assertEquals(0, back.bytesWritten());
            try (NbdStore ok = NbdStore.connect("127.0.0.1", port, "sec", tls(ctx("primary", "primary-trust")))) {
                ok.write(0, ByteBuffer.wrap(new byte[] {9}), false);
            }
            assertEquals(9, back.image()[0]);
        }
    }

    @Test
    void aTlsClientRefusesAServerWithoutTls() throws Exception {
        FaultyStore back = new FaultyStore("sec", 1 << 20);
        try (NbdServer s = NbdServer.start(0, Map.of("sec", Export.of(back)))) {
            IOException e = assertThrows(IOException.class,
                    () -> NbdStore.connect("127.0.0.1", s.port(), "sec", tls(ctx("primary", "primary-trust"))).close());
            assertTrue(e.getMessage().contains("will not start it") && e.getMessage().contains("NBD_REP_ERR_UNSUP"), e.getMessage());
        }
    }

    /** A libnbd certificate directory (ca-cert.pem, client-cert.pem, client-key.pem) for {@code client}. */
    static Path pkiDir(String client) throws Exception {
        Path pki = dir.resolve("pki-" + client);
        Files.createDirectories(pki);
        Files.copy(dir.resolve("gateway.crt"), pki.resolve("ca-cert.pem"));
        Files.copy(dir.resolve(client + ".crt"), pki.resolve("client-cert.pem"));
        String openssl = NbdInteropTest.tool("openssl");
        // keytool cannot export a private key: openssl takes it out of the PKCS#12 file, as a
        // traditional EC key that GnuTLS reads
        NbdInteropTest.Result r = NbdInteropTest.run(List.of("sh", "-c", openssl + " pkcs12 -in " + dir.resolve(client + ".p12")
                + " -nocerts -nodes -passin pass:" + new String(PW) + " | " + openssl + " ec -out " + pki.resolve("client-key.pem")));
        assertEquals(0, r.exit(), r.output());
        return pki;
    }

    @Test
    void nbdinfoOverTlsWithAndWithoutATrustedCertificate() throws Exception {
        String nbdinfo = NbdInteropTest.tool("nbdinfo");
        FaultyStore back = new FaultyStore("sec", 4 << 20);
        try (NbdServer s = NbdServer.start(new java.net.InetSocketAddress("127.0.0.1", 0), Map.of("sec", Export.of(back)), ctx("gateway", "gateway-trust"))) {
            String base = "nbds://127.0.0.1:" + s.port() + "/sec?tls-certificates=";
            NbdInteropTest.Result ok = NbdInteropTest.run(List.of(nbdinfo, base + pkiDir("primary")));
            assertEquals(0, ok.exit(), ok.output());
            assertTrue(ok.output().contains("with TLS") && ok.output().contains("export-size: " + (4 << 20)), ok.output());
            NbdInteropTest.Result rogue = NbdInteropTest.run(List.of(nbdinfo, base + pkiDir("rogue")));
            assertNotEquals(0, rogue.exit(), "a client certificate the gateway does not trust is refused: " + rogue.output());
            NbdInteropTest.Result plain = NbdInteropTest.run(List.of(nbdinfo, "nbd://127.0.0.1:" + s.port() + "/sec"));
            assertNotEquals(0, plain.exit(), "a client without TLS is refused: " + plain.output());
        }
    }
}
