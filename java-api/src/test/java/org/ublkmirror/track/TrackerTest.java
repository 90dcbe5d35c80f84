package org.ublkmirror.track;

import static org.junit.jupiter.api.Assertions.*;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.UUID;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.roaringbitmap.longlong.Roaring64NavigableMap;
import org.ublkmirror.leg.FaultyStore;

class TrackerTest {
    static final UUID VOL = UUID.fromString("00112233-4455-6677-8899-aabbccddeeff");
    static final long T0 = 1_700_000_000_000L;
    static final long BLOCKS = 1L << 28;

    @TempDir
    Path dir;

    static TrackingLog fresh() {
        return new TrackingLog(VOL, 3, 4096, BLOCKS, 60_000);
    }

    /** A LogStore that can be switched to fail, as an unreachable network directory would. */
    static final class FlakyStore implements LogStore {
        final LogStore inner;
        volatile boolean down;
        int writes;

        FlakyStore(LogStore inner) {
            this.inner = inner;
        }

        @Override
        public void write(byte[] record) throws IOException {
            if (down) {
                throw new IOException("network unreachable (injected)");
            }
            writes++;
            inner.write(record);
        }

        @Override
        public byte[] readLatest() throws IOException {
            return inner.readLatest();
        }

        @Override
        public String describe() {
            return "flaky:" + inner.describe();
        }
    }

    @Test
    void trackPersistLoad() throws IOException {
        FaultyStore leg = new FaultyStore("leg", 1 << 20);
        SlotLogStore local = new SlotLogStore(leg, 4096, 256 * 1024);
        DirectoryLogStore ship = new DirectoryLogStore(dir, "vol.trk");
        Tracker t = new Tracker(fresh(), List.of(local, ship));
        assertEquals(TrackStatus.TRACKED, t.track(new TrackingCommand(10, 3, 100, 8, T0)));
        assertEquals(TrackStatus.TRACKED, t.track(new TrackingCommand(11, 3, (1L << 27) + 5, 1, T0 + 61_000)));
        assertEquals(11, t.persist());
        assertEquals(11, t.coveredTag());
        assertEquals(1, t.sequence());
        assertEquals(List.of(), t.shipErrors());

        Tracker r = Tracker.load(List.of(new SlotLogStore(leg.powerLoss(new Random(3)), 4096, 256 * 1024), ship), VOL, null);
        assertTrue(r.loadReport().contains("local copy"), r.loadReport());
        assertEquals(9, r.log().dirtyCount());
        assertEquals(11, r.coveredTag());
        assertEquals(2, r.log().epochs().size());
        assertEquals(1, r.sequence());
        assertEquals(t.log().query(T0, T0 + 1), r.log().query(T0, T0 + 1));
        // the next record continues the sequence
        r.track(new TrackingCommand(12, 3, 1, 1, T0 + 200_000));
        r.persist();
        assertEquals(2, TrackingLogFormat.decode(ship.readLatest()).sequence());
    }

    @Test
    void rejectionsChangeNothingAndSayWhy() throws IOException {
        Tracker t = new Tracker(fresh(), List.of(new DirectoryLogStore(dir, "v")));
        assertEquals(TrackStatus.REJECTED, t.track(new TrackingCommand(5, 3, BLOCKS - 1, 2, T0)));
        assertTrue(t.lastRejection().contains("outside the volume"), t.lastRejection());
        assertEquals(TrackStatus.REJECTED, t.track(new TrackingCommand(6, 4, 0, 1, T0)));
        assertTrue(t.lastRejection().contains("object 4"), t.lastRejection());
        assertEquals(2, t.rejectedCount());
        assertTrue(t.log().isEmpty());
        assertEquals(0, t.persist(), "rejected tags are not covered");
        t.close();
        assertEquals(TrackStatus.REJECTED, t.track(new TrackingCommand(7, 3, 0, 1, T0)));
        assertTrue(t.lastRejection().contains("closed"));
    }

    @Test
    void loadFallsBackToShippedCopyWhenLocalIsCorrupt() throws IOException {
        DirectoryLogStore local = new DirectoryLogStore(dir.resolve("local"), "vol.trk");
        DirectoryLogStore ship = new DirectoryLogStore(dir.resolve("remote"), "vol.trk");
        Tracker t = new Tracker(fresh(), List.of(local, ship));
        t.track(new TrackingCommand(1, 3, 77, 3, T0));
        t.persist();
        byte[] bytes = Files.readAllBytes(local.file());
        bytes[bytes.length / 2] ^= 1;
        Files.write(local.file(), bytes);

        Tracker r = Tracker.load(List.of(local, ship), VOL, null);
        assertTrue(r.loadReport().contains("shipped copy"), r.loadReport());
        assertTrue(r.loadReport().contains("checksum mismatch"), r.loadReport());
        assertEquals(3, r.log().dirtyCount());
        assertTrue(r.log().isDirty(79));
        r.persist(); // repairs the local copy
        assertEquals(3, TrackingLogFormat.decode(local.readLatest()).dirtyCount());

        // local missing altogether
        Files.delete(local.file());
        Tracker m = Tracker.load(List.of(local, ship), VOL, null);
        assertTrue(m.loadReport().contains("missing"), m.loadReport());
        assertEquals(3, m.log().dirtyCount());
    }

    @Test
    void loadRefusesWrongVolumeAndAllCorrupt() throws IOException {
        DirectoryLogStore local = new DirectoryLogStore(dir, "vol.trk");
        Tracker t = new Tracker(fresh(), List.of(local));
        t.track(new TrackingCommand(1, 3, 1, 1, T0));
        t.persist();
        UUID other = UUID.randomUUID();
        CorruptLogException e = assertThrows(CorruptLogException.class, () -> Tracker.load(List.of(local), other, TrackerTest::fresh));
        assertTrue(e.getMessage().contains("belongs to volume"), e.getMessage());
        Files.write(local.file(), new byte[] {1, 2, 3});
        assertThrows(CorruptLogException.class, () -> Tracker.load(List.of(local), VOL, TrackerTest::fresh));
        Files.delete(local.file());
        Tracker n = Tracker.load(List.of(local), VOL, TrackerTest::fresh);
        assertTrue(n.log().isEmpty());
        assertTrue(n.loadReport().contains("started a new one"), n.loadReport());
        assertThrows(IOException.class, () -> Tracker.load(List.of(local), VOL, null));
    }

    @Test
    void failingShipDoesNotFailLocalAndIsRetried() throws IOException {
        DirectoryLogStore local = new DirectoryLogStore(dir.resolve("l"), "v");
        FlakyStore ship = new FlakyStore(new DirectoryLogStore(dir.resolve("r"), "v"));
        Tracker t = new Tracker(fresh(), List.of(local, ship));
        t.track(new TrackingCommand(1, 3, 5, 1, T0));
        ship.down = true;
        assertEquals(1, t.persist());
        assertEquals(1, t.shipErrors().size());
        assertTrue(t.shipErrors().get(0).contains("network unreachable"), t.shipErrors().get(0));
        assertNull(ship.readLatest());
        assertNotNull(local.readLatest());
        // nothing new tracked, but the ship is behind: persistIfChanged retries it
        ship.down = false;
        assertTrue(t.persistIfChanged());
        assertEquals(List.of(), t.shipErrors());
        assertEquals(1, TrackingLogFormat.decode(ship.readLatest()).dirtyCount());
        assertFalse(t.persistIfChanged(), "nothing to do when every copy is current");
    }

    @Test
    void failingLocalFailsPersistButStillShips() throws IOException {
        FlakyStore local = new FlakyStore(new DirectoryLogStore(dir.resolve("l"), "v"));
        DirectoryLogStore ship = new DirectoryLogStore(dir.resolve("r"), "v");
        Tracker t = new Tracker(fresh(), List.of(local, ship));
        t.track(new TrackingCommand(9, 3, 5, 1, T0));
        local.down = true;
        IOException e = assertThrows(IOException.class, t::persist);
        assertTrue(e.getMessage().contains("local copy"), e.getMessage());
        assertEquals(0, t.coveredTag(), "the durable covered tag does not advance");
        assertNotNull(ship.readLatest());
    }

    @Test
    void concurrentTrackingWhilePersisting() throws Exception {
        DirectoryLogStore local = new DirectoryLogStore(dir, "v");
        Tracker t = new Tracker(fresh(), List.of(local));
        int threads = 4;
        int perThread = 20_000;
        Roaring64NavigableMap[] expected = new Roaring64NavigableMap[threads];
        AtomicLong tag = new AtomicLong();
        CountDownLatch start = new CountDownLatch(1);
        AtomicBoolean stop = new AtomicBoolean();
        AtomicReference<Throwable> failure = new AtomicReference<>();
        List<Thread> ws = new ArrayList<>();
        for (int i = 0; i < threads; i++) {
            final int id = i;
            expected[i] = new Roaring64NavigableMap();
            Thread w = new Thread(() -> {
                Random r = new Random(id);
                try {
                    start.await();
                    for (int k = 0; k < perThread; k++) {
                        long b = (r.nextLong() >>> 1) % (BLOCKS - 8);
                        int n = 1 + r.nextInt(8);
                        TrackStatus s = t.track(new TrackingCommand(tag.incrementAndGet(), 3, b, n, T0 + k));
                        if (s != TrackStatus.TRACKED) {
                            throw new AssertionError(t.lastRejection());
                        }
                        expected[id].addRange(b, b + n);
                    }
                } catch (Throwable e) {
                    failure.compareAndSet(null, e);
                }
            });
            ws.add(w);
            w.start();
        }
        List<Long> covered = new ArrayList<>();
        Thread p = new Thread(() -> {
            try {
                start.await();
                while (!stop.get()) {
                    long c = t.persist();
                    covered.add(c);
                    // every record written is a valid, decodable snapshot
                    TrackingLogFormat.decode(local.readLatest());
                }
            } catch (Throwable e) {
                failure.compareAndSet(null, e);
            }
        });
        p.start();
        start.countDown();
        for (Thread w : ws) {
            w.join();
        }
        stop.set(true);
        p.join();
        assertNull(failure.get(), () -> String.valueOf(failure.get()));
        assertTrue(covered.size() > 1, "persisted while tracking");
        for (int i = 1; i < covered.size(); i++) {
            assertTrue(covered.get(i) >= covered.get(i - 1), "covered tag never goes back");
        }
        t.persist();
        TrackingLog decoded = TrackingLogFormat.decode(local.readLatest());
        Roaring64NavigableMap all = new Roaring64NavigableMap();
        for (Roaring64NavigableMap e : expected) {
            all.or(e);
        }
        assertEquals(all, decoded.dirty());
        assertEquals((long) threads * perThread, decoded.coveredTag());
    }

    @Test
    void autoPersistAndCloseWriteTheLog() throws Exception {
        DirectoryLogStore local = new DirectoryLogStore(dir, "v");
        Tracker t = new Tracker(fresh(), List.of(local));
        t.startAutoPersist(20);
        t.track(new TrackingCommand(1, 3, 5, 1, T0));
        long deadline = System.nanoTime() + 5_000_000_000L;
        while (local.readLatest() == null && System.nanoTime() < deadline) {
            Thread.sleep(10);
        }
        assertNotNull(local.readLatest(), "the background persister wrote the log");
        t.track(new TrackingCommand(2, 3, 6, 1, T0));
        t.close();
        TrackingLog d = TrackingLogFormat.decode(local.readLatest());
        assertEquals(2, d.dirtyCount());
        assertEquals(2, d.coveredTag());
        assertNull(t.lastAutoPersistError());
    }

    @Test
    void clearDuringResyncIsPersisted() throws IOException {
        DirectoryLogStore local = new DirectoryLogStore(dir, "v");
        Tracker t = new Tracker(fresh(), List.of(local));
        t.track(new TrackingCommand(1, 3, 0, 100, T0));
        int upTo = t.rollEpoch();
        t.track(new TrackingCommand(2, 3, 50, 1, T0 + 1)); // written while resync copies
        t.clearThrough(0, 100, upTo);
        t.persist();
        TrackingLog d = TrackingLogFormat.decode(local.readLatest());
        assertEquals(1, d.dirtyCount());
        assertTrue(d.isDirty(50));
    }
}
