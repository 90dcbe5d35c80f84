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
}
