package org.ublkmirror.mirror;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.ublkmirror.logship.LogReceiver;
import org.ublkmirror.logship.ReceiverClient;
import org.ublkmirror.logship.ReceiverStore;
import org.ublkmirror.logship.ShipTarget;
import org.ublkmirror.track.AsyncLogStore;
import org.ublkmirror.track.DirtyRange;
import org.ublkmirror.track.TrackingLog;
import org.ublkmirror.track.TrackingLogFormat;
import org.ublkmirror.verify.VerifyReport;

import java.io.IOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicLong;

import static org.junit.jupiter.api.Assertions.*;

/**
 * A mirror shipping its tracking log to a log receiver on loopback: the receiver's copy names
 * exactly the blocks written while the secondary was away, with their times; a receiver that is
 * down or hangs never fails or holds up a write or a FLUSH, and shipping catches up when it returns.
 */
class MirrorLogShippingTest {
    static final long T0 = 1_800_000_000_000L;
    static final int BS = 4096;

    @TempDir
    Path dir;
    final List<AutoCloseable> open = new ArrayList<>();
    final AtomicLong clock = new AtomicLong(T0);

    @AfterEach
    void cleanUp() throws Exception {
        for (int i = open.size() - 1; i >= 0; i--) open.get(i).close();
    }

    LogReceiver receiver(int port) throws IOException {
        LogReceiver r = LogReceiver.start(new InetSocketAddress(InetAddress.getLoopbackAddress(), port), ReceiverStore.open(dir.resolve("rcv")), null);
        open.add(r);
        return r;
    }

    Mirror open(MirrorConfig cfg) throws IOException {
        Mirror.Options o = new Mirror.Options();
        o.clock = clock::get;
        o.shipBackoffMinMillis = 20;
        o.shipBackoffMaxMillis = 200;
        Mirror m = Mirror.open(cfg, o);
        open.add(() -> {
            if (m.state() != Mirror.State.CLOSED) m.close();
        });
        return m;
    }

    static void write(Mirror m, long block, int blocks, long stamp) throws IOException {
        ByteBuffer b = ByteBuffer.allocateDirect(blocks * BS);
        while (b.hasRemaining()) b.putLong(stamp ^ b.position());
        b.flip();
        m.write(block * BS, b, false);
    }

    TrackingLog fetch(int port, String name) throws IOException {
        try (ReceiverClient c = new ReceiverClient("127.0.0.1", port, ReceiverClient.Options.defaults())) {
            ReceiverClient.Fetched f = c.getByName(name);
            assertNotNull(f, "the receiver holds the log of " + name);
            return TrackingLogFormat.decode(f.record());
        }
    }

    static AsyncLogStore.Status shipping(Mirror m) {
        assertEquals(1, m.logShipping().size());
        return m.logShipping().get(0);
    }

    static boolean awaitShipped(Mirror m, long timeoutMillis) throws InterruptedException {
        long end = System.currentTimeMillis() + timeoutMillis;
        while (System.currentTimeMillis() < end) {
            AsyncLogStore.Status s = shipping(m);
            if (s.queuedSeq() >= 0 && !s.behind() && s.error() == null) return true;
            Thread.sleep(10);
        }
        return false;
    }

    @Test
    void theReceiverHoldsExactlyTheDirtyRangesWithTheirTimes() throws Exception {
        LogReceiver r = receiver(0);
        MirrorConfig cfg = new MirrorConfig("db1", dir.resolve("p.img"), dir.resolve("s.img"), null, 1, 60_000)
                .withShipTo(new ShipTarget("127.0.0.1:" + r.port()));
        Mirror.Created c = Mirror.create(cfg, 64L << 20, BS, false, null);
        Mirror m = open(cfg);
        write(m, 0, 4, 1); // mirrored: nothing tracked
        m.detach();
        clock.set(T0 + 1_000);
        write(m, 100, 8, 2);
        write(m, 5000, 1, 3);
        clock.set(T0 + 200_000); // a later epoch
        write(m, 7, 2, 4);
        write(m, 5000, 1, 5);
        m.flush(); // persists the tracking log while degraded, and hands it to the shipper
        assertTrue(awaitShipped(m, 20_000), "shipped: " + shipping(m));
        AsyncLogStore.Status st = shipping(m);
        assertNull(st.error());
        assertTrue(st.shippedMillis() > 0 && st.shippedMillis() <= System.currentTimeMillis(), "shipped at a wall-clock time: " + st);

        TrackingLog got = fetch(r.port(), "db1");
        assertEquals(c.volume(), got.volumeUuid());
        assertEquals(List.of(new DirtyRange(7, 2, T0 + 200_000, T0 + 200_000), new DirtyRange(100, 8, T0 + 1_000, T0 + 1_000),
                new DirtyRange(5000, 1, T0 + 1_000, T0 + 200_000)), got.query(Long.MIN_VALUE, Long.MAX_VALUE));
        assertEquals(m.trackingLog().query(Long.MIN_VALUE, Long.MAX_VALUE), got.query(Long.MIN_VALUE, Long.MAX_VALUE));
        assertEquals(List.of(new DirtyRange(100, 8, T0 + 1_000, T0 + 1_000), new DirtyRange(5000, 1, T0 + 1_000, T0 + 1_000)),
                got.query(T0, T0 + 2_000), "--since/--until select epochs by time");
        Map<String, Object> status = StatusReport.online(m, null, null);
        assertEquals("127.0.0.1:" + r.port(), status.get("ship_to"));
        assertEquals(st.shippedSeq(), ((Map<?, ?>) ((List<?>) status.get("log_shipping")).get(0)).get("shipped_seq"));

        // resync: the shipped log empties too, so the receiver says the secondary misses nothing
        assertTrue(m.attach(0, false).awaitDone(60_000), "resync ended");
        m.flush();
        m.close();
        assertEquals(0, fetch(r.port(), "db1").dirtyCount(), "the final record (after resync) reached the receiver at close");
        try (Inspect in = Inspect.open(cfg)) {
            VerifyReport v = in.verify(1 << 20);
            assertTrue(v.identical(), "legs identical after the resync: " + v.differing());
        }
    }

    static int freePort() throws IOException {
        try (ServerSocket s = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
            return s.getLocalPort();
        }
    }

    @Test
    void aReceiverThatIsDownOrHangsNeverHoldsUpWritesAndShippingCatchesUp() throws Exception {
        int port = freePort();
        MirrorConfig cfg = new MirrorConfig("db2", dir.resolve("p.img"), dir.resolve("s.img"), null, 1, 60_000)
                .withShipTo(new ShipTarget("127.0.0.1:" + port));
        Mirror.create(cfg, 64L << 20, BS, false, null);
        Mirror m = open(cfg); // nobody listens yet: the first open's look for a receiver copy is refused at once
        // then a receiver that accepts connections and never answers: a synchronous ship would wait out its I/O timeout
        ServerSocket blackHole = new ServerSocket();
        blackHole.setReuseAddress(true);
        blackHole.bind(new InetSocketAddress(InetAddress.getLoopbackAddress(), port), 50);
        open.add(blackHole);
        List<Socket> held = java.util.Collections.synchronizedList(new ArrayList<>());
        Thread acceptor = new Thread(() -> {
            try {
                while (true) held.add(blackHole.accept());
            } catch (IOException ignored) {
            }
        });
        acceptor.setDaemon(true);
        acceptor.start();
        m.detach();
        long t = System.nanoTime();
        for (int i = 0; i < 50; i++) {
            clock.set(T0 + i);
            write(m, i * 10L, 1, i);
            m.flush(); // each FLUSH persists the log; none may wait for the receiver
        }
        long tookMs = (System.nanoTime() - t) / 1_000_000;
        // not a performance bound: a ship waits out a 10 s I/O timeout, so flushes that waited would take that long
        assertTrue(tookMs < 8_000, "50 writes + flushes took " + tookMs + " ms with a hung receiver");
        AsyncLogStore.Status st = shipping(m);
        assertTrue(st.behind(), "nothing confirmed shipped: " + st);
        assertEquals(-1, st.shippedSeq());

        // the hung receiver goes away; the port stays closed a while: refused connections, still no wait
        blackHole.close();
        synchronized (held) {
            for (Socket s : held) s.close();
        }
        for (int i = 50; i < 60; i++) {
            clock.set(T0 + i);
            write(m, i * 10L, 1, i);
            m.flush();
        }
        long end = System.currentTimeMillis() + 20_000;
        while (shipping(m).error() == null && System.currentTimeMillis() < end) Thread.sleep(10);
        st = shipping(m);
        assertNotNull(st.error(), "the shipping error is reported: " + st);
        assertTrue(st.error().contains("127.0.0.1:" + port), st.error());
        Map<String, Object> status = StatusReport.online(m, null, null);
        Map<?, ?> sh = (Map<?, ?>) ((List<?>) status.get("log_shipping")).get(0);
        assertEquals(st.queuedSeq(), sh.get("queued_seq"));
        assertNotNull(sh.get("error"));
        assertEquals(60, m.dirtyBlocks(), "every write tracked locally");

        // a real receiver comes up on that port: the newest log arrives without any new write
        LogReceiver r = receiver(port);
        assertTrue(awaitShipped(m, 30_000), "caught up: " + shipping(m));
        TrackingLog got = fetch(r.port(), "db2");
        assertEquals(60, got.dirtyCount());
        assertEquals(m.trackingLog().query(Long.MIN_VALUE, Long.MAX_VALUE), got.query(Long.MIN_VALUE, Long.MAX_VALUE));
        for (int i = 0; i < 60; i++) assertTrue(got.isDirty(i * 10L), "block " + i * 10);
    }

    @Test
    void aMirrorWhosePrimaryLogIsGoneLoadsTheReceiversCopy() throws Exception {
        LogReceiver r = receiver(0);
        MirrorConfig cfg = new MirrorConfig("db3", dir.resolve("p.img"), dir.resolve("s.img"), null, 1, 60_000)
                .withShipTo(new ShipTarget("127.0.0.1:" + r.port()));
        Mirror.create(cfg, 16L << 20, BS, false, null);
        Mirror m = open(cfg);
        m.detach();
        write(m, 42, 3, 1);
        m.flush();
        assertTrue(awaitShipped(m, 20_000));
        m.close();
        // both tracking-log slots of the primary destroyed: the receiver's copy is loaded, said so
        org.ublkmirror.leg.Superblock sb;
        try (Inspect in = Inspect.open(cfg)) {
            sb = in.primary.superblock();
        }
        try (var f = new java.io.RandomAccessFile(dir.resolve("p.img").toFile(), "rw")) {
            f.seek(sb.trackOffset);
            f.write(new byte[(int) (2 * Math.min(sb.trackSlotBytes, 1 << 20))]);
        }
        Mirror m2 = open(cfg);
        assertTrue(m2.trackingLog().isDirty(42) && m2.trackingLog().isDirty(44) && m2.dirtyBlocks() == 3, m2.trackingLog().toString());
        m2.close();
    }
}
