package org.ublkmirror.logship;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.ublkmirror.track.AsyncLogStore;
import org.ublkmirror.track.TrackingLog;
import org.ublkmirror.track.TrackingLogFormat;

import java.io.DataInputStream;

import java.io.IOException;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.UUID;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.*;

/** The log receiver and its protocol over loopback: what it keeps, what it refuses, what survives a restart. */
class LogReceiverTest {
    static final UUID VOL = UUID.fromString("00112233-4455-6677-8899-aabbccddeeff");
    static final UUID OTHER = UUID.fromString("ffeeddcc-bbaa-9988-7766-554433221100");
    static final long T0 = 1_700_000_000_000L;

    @TempDir
    Path dir;
    final List<LogReceiver> receivers = new ArrayList<>();

    @AfterEach
    void stop() {
        receivers.forEach(LogReceiver::close);
    }

    LogReceiver start(Path d, int port) throws IOException {
        LogReceiver r = LogReceiver.start(new InetSocketAddress(InetAddress.getLoopbackAddress(), port), ReceiverStore.open(d), null);
        receivers.add(r);
        return r;
    }

    static ReceiverClient client(LogReceiver r) {
        return new ReceiverClient("127.0.0.1", r.port(), ReceiverClient.Options.defaults());
    }

    /** A record of {@code vol} with sequence {@code seq} and blocks [start, start+count) dirty at T0+seq. */
    static byte[] record(UUID vol, long seq, long start, long count) {
        TrackingLog log = new TrackingLog(vol, 0, 4096, 1 << 20, 60_000);
        log.mark(start, count, T0 + seq);
        return TrackingLogFormat.encode(log, seq);
    }

    static List<Path> files(Path d) throws IOException {
        try (Stream<Path> s = Files.walk(d)) {
            return s.filter(Files::isRegularFile).sorted().toList();
        }
    }

    @Test
    void storesAndReturnsByNameAndVolumeAndLists() throws Exception {
        LogReceiver r = start(dir, 0);
        byte[] rec = record(VOL, 1, 100, 8);
        try (ReceiverClient c = client(r)) {
            assertEquals(1, c.put("db1", rec));
            assertArrayEquals(rec, c.getByName("db1").record());
            ReceiverClient.Fetched byVol = c.getByVolume(VOL);
            assertEquals("db1", byVol.name());
            assertArrayEquals(rec, byVol.record());
            assertNull(c.getByName("nope"));
            assertNull(c.getByVolume(OTHER));
            List<ReceiverStore.Entry> l = c.list();
            assertEquals(1, l.size());
            assertEquals(new ReceiverStore.Entry("db1", VOL, 1, l.get(0).receivedMillis(), 8, rec.length), l.get(0));
        }
        Path slot = dir.resolve("db1@" + VOL).resolve("a.trackinglog");
        assertArrayEquals(rec, Files.readAllBytes(slot), "kept byte for byte in the mirror's directory");
        assertEquals(List.of(slot), files(dir), "no temp file left");
    }

    /** A raw connection, to send frames a correct client never sends. */
    record Raw(Socket s, DataInputStream in, OutputStream out) implements AutoCloseable {
        static Raw open(LogReceiver r) throws IOException {
            Socket s = new Socket("127.0.0.1", r.port());
            s.setSoTimeout(10_000);
            return new Raw(s, new DataInputStream(s.getInputStream()), s.getOutputStream());
        }

        ShipProtocol.Frame send(byte[] frame) throws IOException {
            out.write(frame);
            out.flush();
            return ShipProtocol.read(in);
        }

        @Override
        public void close() throws IOException {
            s.close();
        }
    }

    static int code(ShipProtocol.Frame f) {
        assertEquals(ShipProtocol.ERROR, f.type());
        return ByteBuffer.wrap(f.payload()).getShort() & 0xffff;
    }

    static String message(ShipProtocol.Frame f) {
        return new String(f.payload(), 2, f.payload().length - 2, StandardCharsets.UTF_8);
    }

    @Test
    void corruptFramesAndRecordsAreRefusedAndNothingIsStored() throws Exception {
        LogReceiver r = start(dir, 0);
        byte[] rec = record(VOL, 1, 100, 8);
        byte[] frame = ShipProtocol.encode(ShipProtocol.PUT, ShipProtocol.put("db1", rec));
        // a bit flipped in transit: the frame CRC catches it, the connection is closed
        for (int off : new int[] {ShipProtocol.OFF_TYPE + 1, ShipProtocol.OFF_CRC, ShipProtocol.HEADER + 5, frame.length - 1}) {
            byte[] bad = frame.clone();
            bad[off] ^= 0x10;
            try (Raw raw = Raw.open(r)) {
                ShipProtocol.Frame f = raw.send(bad);
                assertEquals(ShipProtocol.E_BAD_FRAME, code(f), "flip at " + off + ": " + message(f));
                assertTrue(message(f).contains("CRC mismatch"), message(f));
                assertNull(ShipProtocol.read(raw.in()), "connection closed after a bad frame");
            }
        }
        // a shorter length than sent: the CRC (over the header too) fails
        byte[] shorter = frame.clone();
        ByteBuffer.wrap(shorter).putInt(ShipProtocol.OFF_LENGTH, frame.length - ShipProtocol.HEADER - 16);
        try (Raw raw = Raw.open(r)) {
            assertEquals(ShipProtocol.E_BAD_FRAME, code(raw.send(shorter)));
        }
        // a length beyond the limit is refused before anything is allocated
        byte[] huge = frame.clone();
        ByteBuffer.wrap(huge).putInt(ShipProtocol.OFF_LENGTH, ShipProtocol.MAX_PAYLOAD + 1);
        try (Raw raw = Raw.open(r)) {
            ShipProtocol.Frame f = raw.send(huge);
            assertEquals(ShipProtocol.E_BAD_FRAME, code(f));
            assertTrue(message(f).contains("exceeds the limit"), message(f));
        }
        // wrong magic, other version
        byte[] magic = frame.clone();
        magic[0] = 'X';
        try (Raw raw = Raw.open(r)) {
            assertEquals(ShipProtocol.E_BAD_FRAME, code(raw.send(magic)));
        }
        byte[] v2 = frame.clone();
        ByteBuffer.wrap(v2).putShort(ShipProtocol.OFF_VERSION, (short) 2);
        ByteBuffer.wrap(v2).putInt(ShipProtocol.OFF_CRC, ShipProtocol.crc(v2, v2.length - ShipProtocol.HEADER));
        try (Raw raw = Raw.open(r)) {
            ShipProtocol.Frame f = raw.send(v2);
            assertEquals(ShipProtocol.E_VERSION, code(f));
            assertTrue(message(f).contains("version 2 is not supported"), message(f));
        }
        // a well-framed PUT whose record is damaged (its own CRC fails), or truncated
        byte[] badRec = rec.clone();
        badRec[TrackingLogFormat.HEADER_LENGTH + 3] ^= 1;
        try (ReceiverClient c = client(r)) {
            ReceiverClient.ReceiverError e = assertThrows(ReceiverClient.ReceiverError.class, () -> c.put("db1", badRec));
            assertEquals(ShipProtocol.E_CORRUPT_RECORD, e.code);
            assertTrue(e.getMessage().contains("refused") && e.getMessage().contains("CRC"), e.getMessage());
            e = assertThrows(ReceiverClient.ReceiverError.class, () -> c.put("db1", java.util.Arrays.copyOf(rec, rec.length - 9)));
            assertEquals(ShipProtocol.E_CORRUPT_RECORD, e.code);
            e = assertThrows(ReceiverClient.ReceiverError.class, () -> c.put("../etc", rec));
            assertEquals(ShipProtocol.E_BAD_REQUEST, e.code);
            assertTrue(c.list().isEmpty());
            // the connection is still usable after a refused record
            assertEquals(1, c.put("db1", rec));
        }
        assertEquals(List.of(dir.resolve("db1@" + VOL).resolve("a.trackinglog")), files(dir));
    }

    @Test
    void foreignVolumeIsRefusedWithAClearError() throws Exception {
        LogReceiver r = start(dir, 0);
        byte[] rec = record(VOL, 3, 100, 8);
        try (ReceiverClient c = client(r)) {
            c.put("db1", rec);
            ReceiverClient.ReceiverError e = assertThrows(ReceiverClient.ReceiverError.class, () -> c.put("db1", record(OTHER, 9, 0, 1)));
            assertEquals(ShipProtocol.E_FOREIGN, e.code);
            assertTrue(e.getMessage().contains("holds mirror 'db1' of volume " + VOL) && e.getMessage().contains("not " + OTHER)
                    && e.getMessage().contains("remove " + dir.resolve("db1@" + VOL)), e.getMessage());
            e = assertThrows(ReceiverClient.ReceiverError.class, () -> c.put("db2", record(VOL, 9, 0, 1)));
            assertEquals(ShipProtocol.E_FOREIGN, e.code);
            assertTrue(e.getMessage().contains("as mirror 'db1', not 'db2'"), e.getMessage());
            assertArrayEquals(rec, c.getByName("db1").record(), "the held log is untouched");
            assertEquals(1, c.list().size());
        }
    }

    @Test
    void anOlderSequenceNeverReplacesANewerOne() throws Exception {
        LogReceiver r = start(dir, 0);
        byte[] five = record(VOL, 5, 100, 8);
        try (ReceiverClient c = client(r)) {
            assertEquals(5, c.put("db1", five));
            ReceiverClient.ReceiverError e = assertThrows(ReceiverClient.ReceiverError.class, () -> c.put("db1", record(VOL, 3, 0, 1)));
            assertEquals(ShipProtocol.E_STALE, e.code);
            assertTrue(e.getMessage().contains("seq 3 refused: the receiver holds seq 5"), e.getMessage());
            // the same sequence: a retry of the very same record is fine, another record is not
            assertEquals(5, c.put("db1", five));
            e = assertThrows(ReceiverClient.ReceiverError.class, () -> c.put("db1", record(VOL, 5, 7, 1)));
            assertEquals(ShipProtocol.E_STALE, e.code);
            assertArrayEquals(five, c.getByName("db1").record());
            assertEquals(6, c.put("db1", record(VOL, 6, 100, 9)));
        }
    }

    @Test
    void aRestartKeepsTheLogAndADamagedCopyFallsBackToThePreviousOne() throws Exception {
        LogReceiver r = start(dir, 0);
        byte[] one = record(VOL, 1, 100, 8), two = record(VOL, 2, 100, 9);
        try (ReceiverClient c = client(r)) {
            c.put("db1", one);
            c.put("db1", two);
        }
        r.close();
        LogReceiver r2 = start(dir, 0);
        assertEquals(List.of(), r2.store().loadProblems());
        try (ReceiverClient c = client(r2)) {
            assertArrayEquals(two, c.getByName("db1").record(), "the newest record after a restart");
            assertEquals(2, c.list().get(0).sequence());
        }
        r2.close();
        // the newest copy rots on disk: the previous version (the other slot) is used, and said so
        Path slotB = dir.resolve("db1@" + VOL).resolve("b.trackinglog");
        byte[] rotten = Files.readAllBytes(slotB);
        rotten[40] ^= 4;
        Files.write(slotB, rotten);
        LogReceiver r3 = start(dir, 0);
        assertEquals(1, r3.store().loadProblems().size());
        assertTrue(r3.store().loadProblems().get(0).contains("b.trackinglog"), r3.store().loadProblems().toString());
        try (ReceiverClient c = client(r3)) {
            assertArrayEquals(one, c.getByName("db1").record());
            // the next record goes to the damaged slot, not over the good one
            c.put("db1", record(VOL, 3, 0, 2));
            assertArrayEquals(one, Files.readAllBytes(dir.resolve("db1@" + VOL).resolve("a.trackinglog")));
        }
    }

    static int freePort() throws IOException {
        try (ServerSocket s = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
            return s.getLocalPort();
        }
    }

    @Test
    void anUnreachableReceiverIsNamed() throws Exception {
        int port = freePort();
        try (ReceiverClient c = new ReceiverClient("127.0.0.1", port, ReceiverClient.Options.defaults())) {
            ReceiverClient.Unreachable e = assertThrows(ReceiverClient.Unreachable.class, () -> c.getByName("db1"));
            assertTrue(e.getMessage().startsWith("cannot reach log receiver 127.0.0.1:" + port + ": "), e.getMessage());
            assertTrue(e.getMessage().contains("mirrorctl log-receiver"), e.getMessage());
        }
        assertThrows(IllegalArgumentException.class, () -> ReceiverClient.parse("host:port"));
        assertThrows(IllegalArgumentException.class, () -> ReceiverClient.parse(":10810"));
        assertEquals(new InetSocketAddress("::1", 5).getPort(), ReceiverClient.parse("[::1]:5").getPort());
        assertEquals("::1", ReceiverClient.parse("[::1]:5").getHostString());
        assertEquals(LogReceiver.DEFAULT_PORT, ReceiverClient.parse("backup").getPort());
    }

    @Test
    void asyncShippingNeverWaitsForADownReceiverAndCatchesUpWhenItReturns() throws Exception {
        int port = freePort();
        RemoteLogStore remote = new RemoteLogStore(new ReceiverClient("127.0.0.1", port,
                ReceiverClient.Options.defaults().withTimeouts(java.time.Duration.ofSeconds(2), java.time.Duration.ofSeconds(5))), "db1");
        AsyncLogStore ship = new AsyncLogStore(remote, 20, 200);
        try {
            for (int seq = 1; seq <= 5; seq++) ship.write(record(VOL, seq, seq * 10, 1)); // returns at once although nobody listens
            assertFalse(ship.awaitShipped(5, 300));
            AsyncLogStore.Status st = ship.status();
            assertEquals(5, st.queuedSeq());
            assertEquals(-1, st.shippedSeq());
            assertTrue(st.behind());
            assertNotNull(st.error());
            assertTrue(st.error().contains("cannot reach log receiver 127.0.0.1:" + port), st.error());
            assertTrue(st.failures() >= 1);
            LogReceiver r = start(dir, port);
            assertTrue(ship.awaitShipped(5, 30_000), "caught up once the receiver is back: " + ship.status());
            st = ship.status();
            assertNull(st.error());
            assertFalse(st.behind());
            try (ReceiverClient c = client(r)) {
                assertEquals(5, TrackingLogFormat.sequenceOf(c.getByName("db1").record()), "the newest record, not an old one");
            }
        } finally {
            ship.close(1000);
        }
    }

    // ------------------------------------------------------------------ TLS

    static final String PW = "changeit";

    static void keytool(Path d, String... args) throws Exception {
        List<String> cmd = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "keytool").toString()));
        cmd.addAll(List.of(args));
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertTrue(p.waitFor(60, java.util.concurrent.TimeUnit.SECONDS), "keytool timed out");
        assertEquals(0, p.exitValue(), "keytool " + cmd + ": " + out);
    }

    /** Key stores receiver.p12, mirror.p12, rogue.p12; trust stores receiver-trust (mirror only), mirror-trust (receiver). */
    static void pki(Path d) throws Exception {
        for (String n : new String[] {"receiver", "mirror", "rogue"}) {
            keytool(d, "-genkeypair", "-alias", n, "-keyalg", "EC", "-groupname", "secp256r1", "-dname", "CN=" + n,
                    "-ext", "san=ip:127.0.0.1,dns:localhost", "-validity", "2", "-storetype", "PKCS12",
                    "-keystore", d.resolve(n + ".p12").toString(), "-storepass", PW, "-keypass", PW);
            keytool(d, "-exportcert", "-alias", n, "-keystore", d.resolve(n + ".p12").toString(), "-storepass", PW,
                    "-rfc", "-file", d.resolve(n + ".crt").toString());
        }
        keytool(d, "-importcert", "-noprompt", "-alias", "mirror", "-file", d.resolve("mirror.crt").toString(), "-storetype", "PKCS12",
                "-keystore", d.resolve("receiver-trust.p12").toString(), "-storepass", PW);
        keytool(d, "-importcert", "-noprompt", "-alias", "receiver", "-file", d.resolve("receiver.crt").toString(), "-storetype", "PKCS12",
                "-keystore", d.resolve("mirror-trust.p12").toString(), "-storepass", PW);
        Files.writeString(d.resolve("pw"), PW + "\n");
    }

    @Test
    void tlsServesATrustedMirrorAndRefusesOthers() throws Exception {
        Path pki = Files.createDirectories(dir.resolve("pki"));
        pki(pki);
        javax.net.ssl.SSLContext server = org.ublkmirror.gateway.Tls.context(pki.resolve("receiver.p12"), PW.toCharArray(),
                pki.resolve("receiver-trust.p12"), PW.toCharArray());
        LogReceiver r = LogReceiver.start(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0), ReceiverStore.open(dir.resolve("rcv")), server);
        receivers.add(r);
        byte[] rec = record(VOL, 1, 100, 8);
        ShipTarget good = new ShipTarget("127.0.0.1:" + r.port(), pki.resolve("mirror.p12"), pki.resolve("mirror-trust.p12"), pki.resolve("pw"));
        try (ReceiverClient c = good.client(ReceiverClient.Options.defaults())) {
            assertEquals(1, c.put("db1", rec));
            assertArrayEquals(rec, c.getByName("db1").record());
        }
        // a client whose certificate the receiver does not trust
        ShipTarget rogue = new ShipTarget("127.0.0.1:" + r.port(), pki.resolve("rogue.p12"), pki.resolve("mirror-trust.p12"), pki.resolve("pw"));
        try (ReceiverClient c = rogue.client(ReceiverClient.Options.defaults())) {
            IOException e = assertThrows(IOException.class, () -> c.put("db1", record(VOL, 2, 0, 1)));
            assertTrue(e instanceof ReceiverClient.Unreachable, e.toString());
        }
        // a plain client: not a TLS handshake, refused
        try (ReceiverClient c = new ReceiverClient("127.0.0.1", r.port(), ReceiverClient.Options.defaults()
                .withTimeouts(java.time.Duration.ofSeconds(2), java.time.Duration.ofSeconds(5)))) {
            assertThrows(ReceiverClient.Unreachable.class, c::list);
        }
        // a client that does not trust the receiver's certificate refuses it
        ShipTarget distrust = new ShipTarget("127.0.0.1:" + r.port(), pki.resolve("mirror.p12"), pki.resolve("receiver-trust.p12"), pki.resolve("pw"));
        try (ReceiverClient c = distrust.client(ReceiverClient.Options.defaults())) {
            ReceiverClient.Unreachable e = assertThrows(ReceiverClient.Unreachable.class, c::list);
            assertTrue(e.getMessage().contains("TLS with log receiver"), e.getMessage());
        }
        try (ReceiverClient c = good.client(ReceiverClient.Options.defaults())) {
            assertEquals(1, c.list().get(0).sequence(), "nothing from the refused clients was stored");
        }
    }
}
