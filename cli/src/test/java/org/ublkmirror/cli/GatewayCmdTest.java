package org.ublkmirror.cli;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.ublkmirror.gateway.NbdStore;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.*;

/** mirrorctl gateway as a process: serves until SIGTERM; bad input is one line and a non-zero exit. */
class GatewayCmdTest {
    @TempDir
    Path dir;

    static Process spawn(String... args) throws Exception {
        List<String> cmd = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "-cp", System.getProperty("java.class.path"), Mirrorctl.class.getName()));
        cmd.addAll(List.of(args));
        return new ProcessBuilder(cmd).start();
    }

    static int freePort() throws Exception {
        try (ServerSocket s = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
            return s.getLocalPort();
        }
    }

    @Test
    void servesUntilSigtermAndRefusesBadInput() throws Exception {
        Path img = dir.resolve("sec.img");
        try (var f = new java.io.RandomAccessFile(img.toFile(), "rw")) {
            f.setLength(4 << 20);
        }
        int port = freePort();
        Process gw = spawn("gateway", "--export", "sec=" + img, "--listen", "127.0.0.1:" + port);
        try {
            BufferedReader out = new BufferedReader(new InputStreamReader(gw.getInputStream(), StandardCharsets.UTF_8));
            String line = out.readLine();
            assertNotNull(line, "the gateway printed nothing");
            assertEquals("serving nbd://127.0.0.1:" + port + "/sec <- " + img + " (4194304 bytes, one writer at a time)", line);
            try (NbdStore st = NbdStore.connect("127.0.0.1", port, "sec")) {
                assertEquals(4 << 20, st.size());
                st.write(4096, ByteBuffer.wrap("hello".getBytes(StandardCharsets.US_ASCII)), true);
            }
            // a second gateway on the same port: one line, exit 5
            Process two = spawn("gateway", "--export", "sec=" + img, "--listen", "127.0.0.1:" + port);
            assertTrue(two.waitFor(30, TimeUnit.SECONDS));
            String err = new String(two.getErrorStream().readAllBytes(), StandardCharsets.UTF_8).strip();
            assertEquals(Mirrorctl.IO, two.exitValue(), err);
            assertFalse(err.contains("\n"), err);
            assertTrue(err.contains("address already in use"), err);
            gw.destroy(); // SIGTERM
            assertTrue(gw.waitFor(30, TimeUnit.SECONDS), "the gateway stops on SIGTERM");
        } finally {
            gw.destroyForcibly();
            gw.waitFor(10, TimeUnit.SECONDS);
        }
        byte[] all = Files.readAllBytes(img);
        assertEquals("hello", new String(all, 4096, 5, StandardCharsets.US_ASCII));

        Process missing = spawn("gateway", "--export", "x=" + dir.resolve("nope.img"), "--listen", "127.0.0.1:" + freePort());
        assertTrue(missing.waitFor(30, TimeUnit.SECONDS));
        String err = new String(missing.getErrorStream().readAllBytes(), StandardCharsets.UTF_8).strip();
        assertEquals(Mirrorctl.BAD_INPUT, missing.exitValue(), err);
        assertFalse(err.contains("\n"), err);
        assertTrue(err.contains("nope.img") && err.contains("no such file"), err);
    }

    static void keytool(String... args) throws Exception {
        List<String> cmd = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "keytool").toString()));
        cmd.addAll(List.of(args));
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        assertTrue(p.waitFor(60, TimeUnit.SECONDS));
        assertEquals(0, p.exitValue(), new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8));
    }

    @Test
    void servesOverTlsToClientsWithTrustedCertificatesOnly() throws Exception {
        String pw = "secret12";
        for (String n : new String[] {"gw", "pri"}) {
            keytool("-genkeypair", "-alias", n, "-keyalg", "EC", "-groupname", "secp256r1", "-dname", "CN=" + n,
                    "-ext", "san=ip:127.0.0.1", "-validity", "2", "-storetype", "PKCS12",
                    "-keystore", dir.resolve(n + ".p12").toString(), "-storepass", pw, "-keypass", pw);
            keytool("-exportcert", "-alias", n, "-keystore", dir.resolve(n + ".p12").toString(), "-storepass", pw,
                    "-file", dir.resolve(n + ".crt").toString());
        }
        keytool("-importcert", "-noprompt", "-alias", "pri", "-file", dir.resolve("pri.crt").toString(), "-storetype", "PKCS12",
                "-keystore", dir.resolve("gw-trust.p12").toString(), "-storepass", pw);
        keytool("-importcert", "-noprompt", "-alias", "gw", "-file", dir.resolve("gw.crt").toString(), "-storetype", "PKCS12",
                "-keystore", dir.resolve("pri-trust.p12").toString(), "-storepass", pw);
        Files.writeString(dir.resolve("pw"), pw + "\n");
        Path img = dir.resolve("sec.img");
        try (var f = new java.io.RandomAccessFile(img.toFile(), "rw")) {
            f.setLength(1 << 20);
        }
        int port = freePort();
        Process gw = spawn("gateway", "--export", "sec=" + img, "--listen", "127.0.0.1:" + port,
                "--tls-keystore", dir.resolve("gw.p12").toString(), "--tls-truststore", dir.resolve("gw-trust.p12").toString(),
                "--tls-password-file", dir.resolve("pw").toString());
        try {
            String line = new BufferedReader(new InputStreamReader(gw.getInputStream(), StandardCharsets.UTF_8)).readLine();
            assertNotNull(line, "the gateway printed nothing");
            assertTrue(line.startsWith("serving nbds://127.0.0.1:" + port + "/sec") && line.contains("TLS"), line);
            var ctx = org.ublkmirror.gateway.Tls.context(dir.resolve("pri.p12"), pw.toCharArray(), dir.resolve("pri-trust.p12"), pw.toCharArray());
            try (NbdStore st = NbdStore.connect("127.0.0.1", port, "sec", NbdStore.Options.defaults().withTls(ctx))) {
                st.write(0, ByteBuffer.wrap(new byte[] {42}), true);
            }
            java.io.IOException plain = assertThrows(java.io.IOException.class, () -> NbdStore.connect("127.0.0.1", port, "sec").close());
            assertTrue(plain.getMessage().contains("requires TLS"), plain.getMessage());
        } finally {
            gw.destroy();
            if (!gw.waitFor(10, TimeUnit.SECONDS)) gw.destroyForcibly();
        }
        assertEquals(42, Files.readAllBytes(img)[0]);
    }
}
