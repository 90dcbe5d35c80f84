package org.ublkmirror.gateway;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.ublkmirror.leg.FaultyStore;
import org.ublkmirror.leg.FileStore;
import org.ublkmirror.leg.Leg;
import org.ublkmirror.leg.Role;
import org.ublkmirror.leg.Store;
import org.ublkmirror.leg.Stores;

import java.io.EOFException;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.UUID;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.*;

/** NbdServer and NbdStore against each other over loopback. */
class NbdGatewayTest {
    private static final int SIZE = 8 << 20;
    private final List<AutoCloseable> toClose = new ArrayList<>();

    @AfterEach
    void cleanup() {
        for (int i = toClose.size() - 1; i >= 0; i--) {
            try {
                toClose.get(i).close();
            } catch (Exception ignored) {
            }
        }
        toClose.clear();
    }

    private <T extends AutoCloseable> T track(T c) {
        toClose.add(c);
        return c;
    }

    private NbdServer serve(Map<String, Export> exports) throws IOException {
        return track(NbdServer.start(0, exports));
    }

    private NbdStore connect(NbdServer s, String export, Duration ioTimeout) throws IOException {
        return track(NbdStore.connect("127.0.0.1", s.port(), export, NbdStore.Options.defaults().withIoTimeout(ioTimeout)));
    }

    private NbdStore connect(NbdServer s, String export) throws IOException {
        return connect(s, export, Duration.ofSeconds(10));
    }

    private static byte[] read(Store st, long pos, int len) throws IOException {
        ByteBuffer b = ByteBuffer.allocate(len);
        st.read(pos, b);
        assertFalse(b.hasRemaining());
        return b.array();
    }

    @Test
    void randomWritesAndReadsMatchAModel() throws Exception {
        FaultyStore back = new FaultyStore("sec", SIZE);
        NbdServer s = serve(Map.of("sec", Export.of(back)));
        NbdStore nbd = connect(s, "sec");
        assertEquals(SIZE, nbd.size());
        assertEquals("nbd://127.0.0.1:" + s.port() + "/sec", nbd.describe());
        byte[] model = new byte[SIZE];
        Random rnd = new Random(42);
        for (int i = 0; i < 400; i++) {
            int len = 1 + rnd.nextInt(rnd.nextBoolean() ? 4096 : 256 << 10);
            int pos = rnd.nextInt(SIZE - len + 1);
            int op = rnd.nextInt(10);
            if (op < 5) {
                byte[] d = new byte[len];
                rnd.nextBytes(d);
                ByteBuffer src = rnd.nextBoolean() ? ByteBuffer.wrap(d) : ByteBuffer.allocateDirect(len).put(d).flip();
                nbd.write(pos, src, rnd.nextInt(4) == 0);
                assertFalse(src.hasRemaining(), "write consumes its buffer");
                System.arraycopy(d, 0, model, pos, len);
            } else if (op < 6) {
                nbd.discard(pos, len);
                Arrays.fill(model, pos, pos + len, (byte) 0);
            } else if (op < 7) {
                nbd.flush();
            } else {
                assertArrayEquals(Arrays.copyOfRange(model, pos, pos + len), read(nbd, pos, len), "read " + len + " at " + pos);
            }
        }
        assertArrayEquals(model, read(nbd, 0, SIZE));
        assertArrayEquals(model, back.image());
    }

    @Test
    void largeRequestsAreSplitAtTheMaximumPayload() throws Exception {
        int size = 80 << 20;
        FaultyStore back = new FaultyStore("big", size);
        NbdServer s = serve(Map.of("big", Export.of(back)));
        NbdStore nbd = connect(s, "big");
        byte[] d = new byte[70 << 20];
        new Random(7).nextBytes(d);
        nbd.write(4096, ByteBuffer.wrap(d), false);
        byte[] back1 = read(nbd, 4096, d.length);
        assertArrayEquals(d, back1);
        nbd.discard(0, size);
        assertArrayEquals(new byte[1 << 20], read(nbd, 40 << 20, 1 << 20));
    }

    @Test
    void flushAndFuaReachTheBackingStore() throws Exception {
        FaultyStore back = new FaultyStore("sec", SIZE);
        NbdServer s = serve(Map.of("sec", Export.of(back)));
        NbdStore nbd = connect(s, "sec");
        byte[] a = new byte[8192];
        Arrays.fill(a, (byte) 0xa1);
        byte[] b = new byte[8192];
        Arrays.fill(b, (byte) 0xb2);
        long before = back.flushes();
        nbd.write(0, ByteBuffer.wrap(a), false);
        nbd.flush();
        assertEquals(before + 1, back.flushes(), "one NBD FLUSH, one flush of the store");
        nbd.write(1 << 20, ByteBuffer.wrap(b), true);
        assertEquals(before + 1, back.flushes(), "FUA travels as a flag, not as a flush");
        // power loss on the server: the flushed write and the FUA write survive, whatever else happens
        byte[] img = back.powerLoss(new Random(1)).image();
        assertArrayEquals(a, Arrays.copyOfRange(img, 0, 8192), "flushed write survives power loss");
        assertArrayEquals(b, Arrays.copyOfRange(img, 1 << 20, (1 << 20) + 8192), "FUA write survives power loss");
    }

    @Test
    void writeZeroesAndTrimReadBackZeroes() throws Exception {
        FaultyStore back = new FaultyStore("sec", SIZE);
        NbdServer s = serve(Map.of("sec", Export.of(back)));
        NbdStore nbd = connect(s, "sec");
        assertTrue((nbd.transmissionFlags() & Nbd.TF_SEND_WRITE_ZEROES) != 0);
        assertTrue((nbd.transmissionFlags() & Nbd.TF_SEND_TRIM) != 0);
        byte[] ff = new byte[64 << 10];
        Arrays.fill(ff, (byte) 0xff);
        nbd.write(0, ByteBuffer.wrap(ff), false);
        nbd.discard(4096, 8192);
        byte[] got = read(nbd, 0, ff.length);
        for (int i = 0; i < got.length; i++) {
            byte want = i >= 4096 && i < 4096 + 8192 ? 0 : (byte) 0xff;
            assertEquals(want, got[i], "byte " + i);
        }
        // TRIM (not used by NbdStore, but by other clients) also reads back zeroes on this server
        nbd.requestUnchecked(Nbd.CMD_TRIM, 0, 32768, 4096, null);
        assertArrayEquals(new byte[4096], read(nbd, 32768, 4096));
        // WRITE_ZEROES with NO_HOLE writes the zeroes
        nbd.requestUnchecked(Nbd.CMD_WRITE_ZEROES, Nbd.CMD_FLAG_NO_HOLE | Nbd.CMD_FLAG_FUA, 40960, 4096, null);
        assertArrayEquals(new byte[4096], read(nbd, 40960, 4096));
        assertEquals((byte) 0xff, read(nbd, 40960 + 4096, 1)[0]);
    }

    @Test
    void outOfRangeIsAClearIOExceptionOnBothSides() throws Exception {
        FaultyStore back = new FaultyStore("sec", SIZE);
        NbdServer s = serve(Map.of("sec", Export.of(back)));
        NbdStore nbd = connect(s, "sec");
        EOFException e = assertThrows(EOFException.class, () -> nbd.read(SIZE - 100, ByteBuffer.allocate(4096)));
        assertTrue(e.getMessage().contains("outside the export") && e.getMessage().contains(nbd.describe()), e.getMessage());
        assertThrows(EOFException.class, () -> nbd.write(SIZE, ByteBuffer.allocate(1), false));
        assertThrows(EOFException.class, () -> nbd.discard(-1, 10));
        // the server checks too, and answers with the spec's errors without dropping the connection
        IOException r = assertThrows(IOException.class, () -> nbd.requestUnchecked(Nbd.CMD_READ, 0, SIZE - 100, 4096, null));
        assertTrue(r.getMessage().contains("EINVAL"), r.getMessage());
        IOException w = assertThrows(IOException.class, () -> nbd.requestUnchecked(Nbd.CMD_WRITE, 0, SIZE, 512, ByteBuffer.allocate(512)));
        assertTrue(w.getMessage().contains("ENOSPC"), w.getMessage());
        IOException z = assertThrows(IOException.class, () -> nbd.requestUnchecked(Nbd.CMD_WRITE_ZEROES, 0, SIZE - 1, 2, null));
        assertTrue(z.getMessage().contains("ENOSPC"), z.getMessage());
        assertTrue(nbd.isHealthy(), "an error reply does not break the connection");
        assertEquals(0, read(nbd, 0, 16)[0]);
        // a failing backing store maps to EIO
        back.failWritesAfter(0);
        IOException io = assertThrows(IOException.class, () -> nbd.write(0, ByteBuffer.allocate(512), false));
        assertTrue(io.getMessage().contains("EIO"), io.getMessage());
        assertArrayEquals(new byte[SIZE], back.image(), "no byte changed by the refused requests");
    }

    @Test
    void concurrentRequestsFromSeveralThreads() throws Exception {
        FaultyStore back = new FaultyStore("sec", SIZE);
        NbdServer s = serve(Map.of("sec", Export.of(back)));
        NbdStore nbd = connect(s, "sec");
        int threads = 8;
        int region = SIZE / threads;
        ExecutorService ex = Executors.newFixedThreadPool(threads);
        try {
            List<Future<byte[]>> fs = new ArrayList<>();
            for (int t = 0; t < threads; t++) {
                int base = t * region;
                long seed = t;
                fs.add(ex.submit(() -> {
                    Random rnd = new Random(seed);
                    byte[] model = new byte[region];
                    for (int i = 0; i < 150; i++) {
                        int len = 1 + rnd.nextInt(32 << 10);
                        int off = rnd.nextInt(region - len + 1);
                        if (rnd.nextBoolean()) {
                            byte[] d = new byte[len];
                            rnd.nextBytes(d);
                            nbd.write(base + off, ByteBuffer.wrap(d), rnd.nextInt(8) == 0);
                            System.arraycopy(d, 0, model, off, len);
                        } else if (rnd.nextInt(10) == 0) {
                            nbd.flush();
                        } else {
                            assertArrayEquals(Arrays.copyOfRange(model, off, off + len), read(nbd, base + off, len));
                        }
                    }
                    return model;
                }));
            }
            byte[] img = back.image();
            for (int t = 0; t < threads; t++) {
                byte[] model = fs.get(t).get(60, TimeUnit.SECONDS);
                img = back.image();
                assertArrayEquals(model, Arrays.copyOfRange(img, t * region, (t + 1) * region), "region " + t);
            }
        } finally {
            ex.shutdownNow();
        }
    }

    /**
     * A gateway whose disk answers one write at a time, each after {@code paceMs}, and never the
     * write at {@code stuckAt} (-1: none) until released: a slow but live link, and a single stuck request.
     */
    static final class PacedStore implements Store {
        final Store inner;
        final long paceMs, stuckAt;
        final CountDownLatch stuck = new CountDownLatch(1);

        PacedStore(Store inner, long paceMs, long stuckAt) {
            this.inner = inner;
            this.paceMs = paceMs;
            this.stuckAt = stuckAt;
        }

        public long size() throws IOException {
            return inner.size();
        }

        public void read(long pos, ByteBuffer dst) throws IOException {
            inner.read(pos, dst);
        }

        public void write(long pos, ByteBuffer src, boolean fua) throws IOException {
            try {
                if (pos == stuckAt) {
                    stuck.await();
                } else {
                    synchronized (this) {
                        Thread.sleep(paceMs);
                        inner.write(pos, src, fua);
                    }
                    return;
                }
            } catch (InterruptedException e) {
                throw new IOException("interrupted");
            }
            inner.write(pos, src, fua);
        }

        public void flush() throws IOException {
            inner.flush();
        }

        public void discard(long pos, long len) throws IOException {
            inner.discard(pos, len);
        }

        public String describe() {
            return inner.describe();
        }

        public void close() throws IOException {
            stuck.countDown();
            inner.close();
        }
    }

    @Test
    void aSlowButLiveServerIsNotALostLink() throws Exception {
        // 12 writes queued at once on a server that answers one every 100 ms: the last waits about
        // 1.2 s, three times the I/O timeout, yet replies keep coming, so nothing fails
        PacedStore back = new PacedStore(new FaultyStore("sec", SIZE), 100, -1);
        NbdServer s = serve(Map.of("sec", Export.of(back)));
        NbdStore nbd = connect(s, "sec", Duration.ofMillis(400));
        ExecutorService ex = Executors.newFixedThreadPool(12);
        try {
            List<Future<?>> fs = new ArrayList<>();
            for (int i = 0; i < 12; i++) {
                long pos = i * 4096L;
                byte[] b = new byte[4096];
                Arrays.fill(b, (byte) (i + 1));
                fs.add(ex.submit(() -> { nbd.write(pos, ByteBuffer.wrap(b), false); return null; }));
            }
            for (Future<?> f : fs) f.get(30, TimeUnit.SECONDS);
            assertTrue(nbd.isHealthy(), "a server that keeps answering is healthy");
            for (int i = 0; i < 12; i++) assertEquals((byte) (i + 1), read(nbd, i * 4096L, 4096)[4095], "block " + i);
        } finally {
            ex.shutdownNow();
        }
    }

    @Test
    void oneStuckRequestBreaksTheConnectionAfterStuckFactorTimeoutsWhileOthersAreAnswered() throws Exception {
        PacedStore back = new PacedStore(new FaultyStore("sec", SIZE), 20, 0);
        NbdServer s = serve(Map.of("sec", Export.of(back)));
        long timeoutMs = 200;
        NbdStore nbd = connect(s, "sec", Duration.ofMillis(timeoutMs));
        toClose.add(back::close);
        ExecutorService ex = Executors.newFixedThreadPool(2);
        try {
            long t0 = System.nanoTime();
            Future<?> stuck = ex.submit(() -> { nbd.write(0, ByteBuffer.allocate(4096), false); return null; });
            // other writes keep being answered: the server is alive
            int answered = 0;
            IOException later = null;
            while (later == null) {
                try {
                    nbd.write(8192, ByteBuffer.allocate(4096), false);
                    answered++;
                } catch (IOException e) {
                    later = e;
                }
                assertTrue((System.nanoTime() - t0) / 1_000_000 < 20_000, "the stuck write never failed");
            }
            Exception e = assertThrows(Exception.class, () -> stuck.get(10, TimeUnit.SECONDS));
            long ms = (System.nanoTime() - t0) / 1_000_000;
            assertTrue(ms >= NbdStore.STUCK_FACTOR * timeoutMs, "failed after " + ms + " ms, before " + NbdStore.STUCK_FACTOR + " x " + timeoutMs);
            assertTrue(answered > 10, "the other writes were answered meanwhile: " + answered);
            String m = e.getCause().getMessage();
            assertTrue(m.contains("no reply to WRITE of 4096 bytes at 0 within " + NbdStore.STUCK_FACTOR * timeoutMs + " ms")
                    && m.contains("while the server answered others"), m);
            assertFalse(nbd.isHealthy());
        } finally {
            ex.shutdownNow();
        }
    }

    /**
     * A store whose calls hang while the gate is shut: a gateway whose disk stopped answering
     * (with {@code readsStall} false only writes, flushes and discards hang: a disk hanging on writes).
     */
    static final class StallingStore implements Store {
        final Store inner;
        final boolean readsStall;
        volatile CountDownLatch gate = new CountDownLatch(0);

        StallingStore(Store inner) {
            this(inner, true);
        }

        StallingStore(Store inner, boolean readsStall) {
            this.inner = inner;
            this.readsStall = readsStall;
        }

        void stall() {
            gate = new CountDownLatch(1);
        }

        void release() {
            gate.countDown();
        }

        private void pass() throws IOException {
            try {
                gate.await();
            } catch (InterruptedException e) {
                throw new IOException("interrupted");
            }
        }

        public long size() throws IOException {
            return inner.size();
        }

        public void read(long pos, ByteBuffer dst) throws IOException {
            if (readsStall) pass();
            inner.read(pos, dst);
        }

        public void write(long pos, ByteBuffer src, boolean fua) throws IOException {
            pass();
            inner.write(pos, src, fua);
        }

        public void flush() throws IOException {
            pass();
            inner.flush();
        }

        public void discard(long pos, long len) throws IOException {
            pass();
            inner.discard(pos, len);
        }

        public String describe() {
            return inner.describe();
        }

        public void close() throws IOException {
            release();
            inner.close();
        }
    }

    @Test
    void aServerThatStopsAnsweringFailsEveryCallWithinTheTimeout() throws Exception {
        StallingStore back = new StallingStore(new FaultyStore("sec", SIZE));
        NbdServer s = serve(Map.of("sec", Export.of(back)));
        toClose.add(back::release);
        NbdStore nbd = connect(s, "sec", Duration.ofMillis(500));
        nbd.write(0, ByteBuffer.allocate(4096), false);
        back.stall();
        ExecutorService ex = Executors.newFixedThreadPool(3);
        try {
            long t0 = System.nanoTime();
            List<Future<?>> fs = new ArrayList<>();
            fs.add(ex.submit(() -> { nbd.read(0, ByteBuffer.allocate(4096)); return null; }));
            fs.add(ex.submit(() -> { nbd.write(8192, ByteBuffer.allocate(4096), true); return null; }));
            fs.add(ex.submit(() -> { nbd.flush(); return null; }));
            for (Future<?> f : fs) {
                Exception e = assertThrows(Exception.class, () -> f.get(5, TimeUnit.SECONDS));
                assertInstanceOf(IOException.class, e.getCause(), String.valueOf(e));
                assertTrue(e.getCause().getMessage().contains(nbd.describe()), e.getCause().getMessage());
            }
            long ms = (System.nanoTime() - t0) / 1_000_000;
            assertTrue(ms < 2500, "all calls failed after " + ms + " ms, I/O timeout 500 ms");
            assertFalse(nbd.isHealthy());
            long t1 = System.nanoTime();
            IOException later = assertThrows(IOException.class, () -> nbd.read(0, ByteBuffer.allocate(1)));
            assertTrue(later.getMessage().contains("I/O timeout"), later.getMessage());
            assertTrue((System.nanoTime() - t1) / 1_000_000 < 500, "a broken connection fails at once, without waiting for a timeout");
        } finally {
            ex.shutdownNow();
            back.release();
        }
    }

    @Test
    void aDroppedConnectionFailsPendingAndLaterCallsPromptly() throws Exception {
        StallingStore back = new StallingStore(new FaultyStore("sec", SIZE));
        NbdServer s = serve(Map.of("sec", Export.of(back)));
        toClose.add(back::release);
        NbdStore nbd = connect(s, "sec", Duration.ofSeconds(30));
        back.stall();
        ExecutorService ex = Executors.newSingleThreadExecutor();
        try {
            Future<?> f = ex.submit(() -> { nbd.read(0, ByteBuffer.allocate(4096)); return null; });
            Thread.sleep(200);
            long t0 = System.nanoTime();
            s.abort(); // the gateway dies: its sockets close
            Exception e = assertThrows(Exception.class, () -> f.get(5, TimeUnit.SECONDS));
            assertInstanceOf(IOException.class, e.getCause());
            assertTrue((System.nanoTime() - t0) / 1_000_000 < 2000, "pending call failed promptly, not after the 30 s timeout");
            IOException later = assertThrows(IOException.class, () -> nbd.write(0, ByteBuffer.allocate(1), false));
            assertTrue(later.getMessage().contains("closed the connection") || later.getMessage().contains("connection lost"), later.getMessage());
            IOException refused = assertThrows(IOException.class,
                    () -> NbdStore.connect("127.0.0.1", s.port(), "sec", NbdStore.Options.defaults().withConnectTimeout(Duration.ofSeconds(2))));
            assertTrue(refused.getMessage().contains("cannot connect"), refused.getMessage());
        } finally {
            ex.shutdownNow();
            back.release();
        }
    }

    @Test
    void closeLetsRequestsInFlightFinishThenHangsUp() throws Exception {
        StallingStore back = new StallingStore(new FaultyStore("sec", SIZE));
        NbdServer s = serve(Map.of("sec", Export.of(back)));
        toClose.add(back::release);
        NbdStore nbd = connect(s, "sec", Duration.ofSeconds(30));
        back.stall();
        ExecutorService ex = Executors.newFixedThreadPool(2);
        try {
            byte[] d = new byte[4096];
            Arrays.fill(d, (byte) 0x42);
            Future<?> w = ex.submit(() -> { nbd.write(0, ByteBuffer.wrap(d), true); return null; });
            Thread.sleep(200); // the write is in the server's hands, stalled in the store
            Future<?> closing = ex.submit(() -> { s.close(); return null; });
            Thread.sleep(200);
            assertFalse(closing.isDone(), "close waits for the request in flight");
            back.release();
            w.get(5, TimeUnit.SECONDS); // answered, not dropped
            closing.get(5, TimeUnit.SECONDS);
            assertEquals(0x42, ((FaultyStore) back.inner).image()[0]);
            assertThrows(IOException.class, () -> nbd.read(0, ByteBuffer.allocate(1)), "then the connection is gone");
        } finally {
            ex.shutdownNow();
            back.release();
        }
    }

    @Test
    void aTimedOutClientKeepsTheExportUntilItsStaleRequestsEnd() throws Exception {
        StallingStore back = new StallingStore(new FaultyStore("sec", SIZE));
        NbdServer s = serve(Map.of("sec", Export.of(back)));
        toClose.add(back::release);
        NbdStore old = connect(s, "sec", Duration.ofMillis(300));
        back.stall();
        byte[] stale = new byte[4096];
        Arrays.fill(stale, (byte) 0x11);
        assertThrows(IOException.class, () -> old.write(0, ByteBuffer.wrap(stale), false), "times out");
        assertFalse(old.isHealthy());
        Thread.sleep(300);
        // the stale write still sits in the gateway: a new client must not get in before it ends
        IOException busy = assertThrows(IOException.class, () -> connect(s, "sec"));
        assertTrue(busy.getMessage().contains("already in use"), busy.getMessage());
        back.release();
        NbdStore fresh = null;
        for (int i = 0; i < 100 && fresh == null; i++) {
            try {
                fresh = connect(s, "sec");
            } catch (IOException again) {
                Thread.sleep(20);
            }
        }
        assertNotNull(fresh, "the export is free once the stale write ended");
        assertEquals(0x11, read(fresh, 0, 1)[0], "the stale write landed before the new client came in");
        byte[] now = new byte[4096];
        Arrays.fill(now, (byte) 0x22);
        fresh.write(0, ByteBuffer.wrap(now), false);
        Thread.sleep(100);
        assertEquals(0x22, read(fresh, 0, 1)[0], "and nothing old overwrites the new client's data");
    }

    @Test
    void aSecondWriterIsRefusedUnlessShared() throws Exception {
        FaultyStore one = new FaultyStore("one", SIZE);
        FaultyStore two = new FaultyStore("two", SIZE);
        NbdServer s = serve(Map.of("one", Export.of(one), "two", Export.shared(two)));
        NbdStore a = connect(s, "one");
        IOException e = assertThrows(IOException.class, () -> connect(s, "one"));
        assertTrue(e.getMessage().contains("already in use") && e.getMessage().contains("NBD_REP_ERR_POLICY"), e.getMessage());
        assertTrue((a.transmissionFlags() & Nbd.TF_CAN_MULTI_CONN) == 0, "no CAN_MULTI_CONN for a single-writer export");
        a.write(0, ByteBuffer.wrap(new byte[] {1}), false);
        a.close();
        // the export is free again once the first client left
        NbdStore c = null;
        for (int i = 0; i < 100 && c == null; i++) {
            try {
                c = connect(s, "one");
            } catch (IOException again) {
                Thread.sleep(20);
            }
        }
        assertNotNull(c, "export released after the first client disconnected");
        assertEquals(1, read(c, 0, 1)[0]);
        // a shared export takes several writers, and says so with CAN_MULTI_CONN
        NbdStore x = connect(s, "two");
        NbdStore y = connect(s, "two");
        assertTrue((x.transmissionFlags() & Nbd.TF_CAN_MULTI_CONN) != 0);
        x.write(0, ByteBuffer.wrap(new byte[] {7}), false);
        y.write(1, ByteBuffer.wrap(new byte[] {8}), false);
        assertArrayEquals(new byte[] {7, 8}, read(y, 0, 2));
        // unknown export: a clear refusal
        IOException u = assertThrows(IOException.class, () -> connect(s, "nope"));
        assertTrue(u.getMessage().contains("no export named 'nope'") && u.getMessage().contains("NBD_REP_ERR_UNKNOWN"), u.getMessage());
    }

    @Test
    void aLegLivesOnTheRemoteStore() throws Exception {
        Path dir = Files.createTempDirectory("nbd-leg");
        Path file = dir.resolve("secondary.img");
        try (FileStore fs = FileStore.createSparse(file, 64 << 20)) {
            NbdServer s = serve(Map.of("sec", Export.of(fs)));
            UUID vol = UUID.randomUUID();
            String spec = "nbd://127.0.0.1:" + s.port() + "/sec";
            try (Store remote = Stores.open(spec)) {
                assertInstanceOf(NbdStore.class, remote);
                Leg leg = Leg.create(remote, new Leg.Spec("m", vol, Role.SECONDARY, 4096, 0, 16, 8, 3));
                ByteBuffer data = ByteBuffer.allocate(4096);
                Arrays.fill(data.array(), (byte) 0x3c);
                leg.data().write(5, data, false); // block 5 of the volume
                remote.flush();
            }
            // the primary opens it again, unchanged Leg.open: the metadata is on the remote volume
            try (Store remote = Stores.open(spec)) {
                Leg leg = Leg.open(remote);
                assertEquals(vol, leg.superblock().volumeUuid);
                assertEquals(Role.SECONDARY, leg.superblock().role);
                ByteBuffer got = ByteBuffer.allocate(4096);
                leg.data().read(5, got);
                assertEquals((byte) 0x3c, got.get(0));
            }
            // and the same bytes are in the gateway's file
            try (FileStore local = FileStore.openReadOnly(file)) {
                assertEquals(vol, Leg.open(local).superblock().volumeUuid);
            }
        } finally {
            Files.deleteIfExists(file);
            Files.deleteIfExists(dir);
        }
    }

    @Test
    void storesParsesNbdSpecs() {
        assertEquals(new Stores.Remote("127.0.0.1", 10809, "sec", false), Stores.parseNbd("nbd://127.0.0.1/sec"));
        assertEquals(new Stores.Remote("gw", 1234, "", true), Stores.parseNbd("nbds://gw:1234/"));
        assertEquals(new Stores.Remote("::1", 99, "a/b", false), Stores.parseNbd("nbd://[::1]:99/a/b"));
        assertThrows(IllegalArgumentException.class, () -> Stores.parseNbd("nbd:///x"));
        assertFalse(Stores.isRemote("/dev/sdb"));
        assertThrows(IllegalArgumentException.class, () -> Stores.open("nbds://127.0.0.1:1/x"), "nbds:// without TLS settings");
    }
}
