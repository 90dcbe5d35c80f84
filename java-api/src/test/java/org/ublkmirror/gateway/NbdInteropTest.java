package org.ublkmirror.gateway;

import org.junit.jupiter.api.Test;
import org.ublkmirror.leg.FileStore;
import org.ublkmirror.leg.Leg;
import org.ublkmirror.leg.Role;
import org.ublkmirror.leg.Store;
import org.ublkmirror.leg.Stores;

import java.io.IOException;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.UUID;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.*;

/**
 * Interop with third-party NBD implementations (Debian: qemu-utils, libnbd-bin): our client
 * against qemu-nbd, and nbdinfo and qemu-io against our server. Missing tools FAIL these tests
 * (they are part of what the gateway promises), they are never skipped.
 */
class NbdInteropTest {

    static String tool(String name) {
        for (String dir : System.getenv().getOrDefault("PATH", "/usr/bin:/bin").split(":")) {
            Path p = Path.of(dir, name);
            if (Files.isExecutable(p)) return p.toString();
        }
        for (String dir : new String[] {"/usr/bin", "/usr/sbin", "/usr/local/bin"}) {
            Path p = Path.of(dir, name);
            if (Files.isExecutable(p)) return p.toString();
        }
        fail(name + " is not installed: these interop tests need it (apt-get install -y qemu-utils libnbd-bin nbdkit)");
        return null;
    }

    static int freePort() throws IOException {
        try (ServerSocket s = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
            return s.getLocalPort();
        }
    }

    record Result(int exit, String output) {
    }

    static Result run(List<String> cmd) throws Exception {
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        try {
            if (!p.waitFor(60, TimeUnit.SECONDS)) fail("timed out: " + cmd);
            return new Result(p.exitValue(), new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8));
        } finally {
            p.destroyForcibly();
        }
    }

    /** qemu-nbd serving {@code file} as export "exp" on 127.0.0.1; waits until it answers. */
    static Process qemuNbd(Path file, int port) throws Exception {
        Process p = new ProcessBuilder(tool("qemu-nbd"), "-f", "raw", "-x", "exp", "-b", "127.0.0.1", "-p", String.valueOf(port),
                "--persistent", "--shared=4", "--cache=writeback", file.toString())
                .redirectErrorStream(true).redirectOutput(file.resolveSibling("qemu-nbd.log").toFile()).start();
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(15);
        while (true) {
            try (java.net.Socket s = new java.net.Socket("127.0.0.1", port)) {
                return p;
            } catch (IOException e) {
                if (!p.isAlive()) fail("qemu-nbd exited: " + Files.readString(file.resolveSibling("qemu-nbd.log")));
                if (System.nanoTime() > deadline) {
                    p.destroyForcibly();
                    fail("qemu-nbd did not listen on port " + port);
                }
                Thread.sleep(50);
            }
        }
    }

    static void stop(Process p) throws InterruptedException {
        if (p == null) return;
        p.destroy();
        if (!p.waitFor(5, TimeUnit.SECONDS)) {
            p.destroyForcibly();
            p.waitFor(5, TimeUnit.SECONDS);
        }
    }

    @Test
    void ourClientAgainstQemuNbd() throws Exception {
        Path dir = Files.createTempDirectory("nbd-qemu");
        Path file = dir.resolve("sec.img");
        Process q = null;
        try {
            long size = 32 << 20;
            try (FileStore f = FileStore.createSparse(file, size)) {
                // nothing: qemu-nbd owns it from here
            }
            int port = freePort();
            q = qemuNbd(file, port);
            String spec = "nbd://127.0.0.1:" + port + "/exp";
            byte[] model = new byte[(int) size];
            try (NbdStore nbd = NbdStore.connect("127.0.0.1", port, "exp", NbdStore.Options.defaults().withIoTimeout(Duration.ofSeconds(10)))) {
                assertEquals(size, nbd.size());
                assertEquals(spec, nbd.describe());
                Random rnd = new Random(3);
                for (int i = 0; i < 200; i++) {
                    int len = 1 + rnd.nextInt(128 << 10);
                    int pos = rnd.nextInt((int) size - len + 1);
                    switch (rnd.nextInt(6)) {
                        case 0, 1 -> {
                            byte[] d = new byte[len];
                            rnd.nextBytes(d);
                            nbd.write(pos, ByteBuffer.wrap(d), rnd.nextInt(3) == 0);
                            System.arraycopy(d, 0, model, pos, len);
                        }
                        case 2 -> {
                            nbd.discard(pos, len);
                            Arrays.fill(model, pos, pos + len, (byte) 0);
                        }
                        case 3 -> nbd.flush();
                        default -> {
                            ByteBuffer b = ByteBuffer.allocate(len);
                            nbd.read(pos, b);
                            assertArrayEquals(Arrays.copyOfRange(model, pos, pos + len), b.array(), "read " + len + " at " + pos);
                        }
                    }
                }
                nbd.flush();
            }
            assertArrayEquals(model, Files.readAllBytes(file), "qemu-nbd's file holds what we wrote");
            // a leg on qemu-nbd: metadata on the remote volume, opened back with Leg.open
            UUID vol = UUID.randomUUID();
            try (Store remote = Stores.open(spec)) {
                Leg.create(remote, new Leg.Spec("m", vol, Role.SECONDARY, 4096, 0, 16, 8, 1));
            }
            try (Store remote = Stores.open(spec)) {
                assertEquals(vol, Leg.open(remote).superblock().volumeUuid);
            }
            // qemu-nbd goes away: the open store fails promptly, and a new connect says it cannot connect
            try (NbdStore nbd = NbdStore.connect("127.0.0.1", port, "exp", NbdStore.Options.defaults().withIoTimeout(Duration.ofSeconds(30)))) {
                stop(q);
                q = null;
                long t0 = System.nanoTime();
                assertThrows(IOException.class, () -> nbd.read(0, ByteBuffer.allocate(4096)));
                assertTrue((System.nanoTime() - t0) / 1_000_000 < 3000);
            }
            IOException e = assertThrows(IOException.class, () -> Stores.open(spec));
            assertTrue(e.getMessage().contains("cannot connect"), e.getMessage());
        } finally {
            stop(q);
            Files.deleteIfExists(file);
            Files.deleteIfExists(dir.resolve("qemu-nbd.log"));
            Files.deleteIfExists(dir);
        }
    }

    @Test
    void ourClientAgainstNbdkit() throws Exception {
        String nbdkit = tool("nbdkit");
        int port = freePort();
        Path log = Files.createTempFile("nbdkit", ".log");
        Process k = new ProcessBuilder(nbdkit, "-f", "-i", "127.0.0.1", "-p", String.valueOf(port), "--exit-with-parent", "memory", "16M")
                .redirectErrorStream(true).redirectOutput(log.toFile()).start();
        try {
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(15);
            NbdStore nbd = null;
            while (nbd == null) {
                try {
                    nbd = NbdStore.connect("127.0.0.1", port, "", NbdStore.Options.defaults().withIoTimeout(Duration.ofSeconds(10)));
                } catch (IOException e) {
                    if (!k.isAlive() || System.nanoTime() > deadline) fail("nbdkit did not serve: " + e.getMessage() + " " + Files.readString(log));
                    Thread.sleep(50);
                }
            }
            try (NbdStore st = nbd) {
                assertEquals(16 << 20, st.size());
                byte[] d = new byte[1 << 20];
                new Random(9).nextBytes(d);
                st.write(12345, ByteBuffer.wrap(d), true);
                st.flush();
                ByteBuffer got = ByteBuffer.allocate(d.length);
                st.read(12345, got);
                assertArrayEquals(d, got.array());
                st.discard(20000, 5000);
                ByteBuffer z = ByteBuffer.allocate(5000);
                st.read(20000, z);
                assertArrayEquals(new byte[5000], z.array(), "WRITE_ZEROES reads back zeroes on nbdkit");
                // a leg on nbdkit's memory: created and opened back over the network
                UUID vol = UUID.randomUUID();
                Leg.create(st, new Leg.Spec("m", vol, Role.SECONDARY, 4096, 0, 16, 8, 1));
                assertEquals(vol, Leg.open(st).superblock().volumeUuid);
            }
        } finally {
            stop(k);
            Files.deleteIfExists(log);
        }
    }

    @Test
    void nbdinfoAndQemuIoAgainstOurServer() throws Exception {
        String nbdinfo = tool("nbdinfo");
        String qemuIo = tool("qemu-io");
        Path dir = Files.createTempDirectory("nbd-ours");
        Path file = dir.resolve("sec.img");
        try (FileStore fs = FileStore.createSparse(file, 16 << 20);
             NbdServer s = NbdServer.start(0, Map.of("exp", Export.of(fs), "other", Export.shared(fs)))) {
            String url = "nbd://127.0.0.1:" + s.port() + "/exp";
            Result info = run(List.of(nbdinfo, url));
            assertEquals(0, info.exit(), info.output());
            assertTrue(info.output().contains("export-size: " + (16 << 20)), info.output());
            assertTrue(info.output().contains("can_flush: true") && info.output().contains("can_fua: true")
                    && info.output().contains("can_zero: true") && info.output().contains("can_trim: true"), info.output());
            Result list = run(List.of(nbdinfo, "--list", "nbd://127.0.0.1:" + s.port()));
            assertEquals(0, list.exit(), list.output());
            assertTrue(list.output().contains("exp") && list.output().contains("other"), list.output());
            Result missing = run(List.of(nbdinfo, "nbd://127.0.0.1:" + s.port() + "/nope"));
            assertNotEquals(0, missing.exit(), missing.output());
            assertTrue(missing.output().contains("nope"), missing.output());

            Result io = run(List.of(qemuIo, "-f", "raw", url,
                    "-c", "write -P 0x5a 0 64k", "-c", "write -f -P 0x33 1M 4k", "-c", "flush",
                    "-c", "read -P 0x5a 0 64k", "-c", "read -P 0x33 1M 4k",
                    "-c", "write -z 8k 4k", "-c", "read -P 0 8k 4k", "-c", "discard 16k 4k", "-c", "read -P 0 16k 4k"));
            assertEquals(0, io.exit(), io.output());
            assertFalse(io.output().contains("Pattern verification failed") || io.output().contains("error") || io.output().contains("failed"), io.output());
            byte[] img = Files.readAllBytes(file);
            for (int i = 0; i < 64 << 10; i++) {
                byte want = (i >= 8192 && i < 12288) || (i >= 16384 && i < 20480) ? 0 : (byte) 0x5a;
                assertEquals(want, img[i], "byte " + i + " of the exported file");
            }
            assertEquals((byte) 0x33, img[1 << 20]);
            // a second writer of the single-writer export is refused while qemu-io... holds it: use our client as the holder
            try (NbdStore holder = NbdStore.connect("127.0.0.1", s.port(), "exp")) {
                Result second = run(List.of(qemuIo, "-f", "raw", url, "-c", "read 0 4k"));
                assertNotEquals(0, second.exit(), second.output());
                assertTrue(second.output().contains("already in use"), second.output());
            }
        } finally {
            Files.deleteIfExists(file);
            Files.deleteIfExists(dir);
        }
    }
}
