package org.ublkmirror.resync;

import org.junit.jupiter.api.Test;
import org.roaringbitmap.longlong.Roaring64Bitmap;
import org.ublkmirror.fork.RangeLock;
import org.ublkmirror.leg.BlockIO;
import org.ublkmirror.leg.FaultyStore;
import org.ublkmirror.leg.StoreBlockIO;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class ResyncTest {
    static final int BS = 4096;
    static final long BLOCKS = 2048; // 8 MiB

    /** Two legs that were identical, then the primary took writes the secondary missed. */
    static final class Mirror {
        final FaultyStore ps = new FaultyStore("primary", BS * BLOCKS);
        FaultyStore ss = new FaultyStore("secondary", BS * BLOCKS);
        final BlockIO p = new StoreBlockIO(ps, 0, BS, BLOCKS);
        BlockIO s = new StoreBlockIO(ss, 0, BS, BLOCKS);
        final Roaring64Bitmap dirty = new Roaring64Bitmap();
        final RangeLock lock = new RangeLock();

        Mirror(long seed, int clusters, boolean sharedBase) throws IOException {
            Random rnd = new Random(seed);
            if (sharedBase) {
                byte[] base = new byte[(int) (BS * BLOCKS)];
                rnd.nextBytes(base);
                ps.write(0, ByteBuffer.wrap(base), false);
                ss.write(0, ByteBuffer.wrap(base), false);
            }
            for (int i = 0; i < clusters; i++) {
                long b = rnd.nextInt((int) BLOCKS - 16);
                int n = 1 + rnd.nextInt(16);
                byte[] d = new byte[n * BS];
                rnd.nextBytes(d);
                p.write(b, ByteBuffer.wrap(d), false);
                dirty.addRange(b, b + n);
            }
            ps.flush();
            ss.flush();
            ps.resetCounters();
            ss.resetCounters();
        }

        long dirtyBlocks() {
            return dirty.getLongCardinality();
        }

        boolean identical() {
            return Arrays.equals(ps.image(), ss.image());
        }
    }

    /**
     * Stands in for the engine's tracking log: an in-memory set and the last persisted copy. As
     * the listener contract says, a copied extent stays in {@code mem} (pending) until a
     * checkpoint after the barrier that sealed it: only then is it cleared and persisted.
     */
    static class Tracker implements ResyncListener {
        final Roaring64Bitmap mem;
        Roaring64Bitmap persisted;
        final List<String> events;
        int checkpoints;
        int copiedSinceCheckpoint;
        /** Reported, not yet sealed by a barrier; sealed, waiting for the checkpoint (its flush). */
        final Roaring64Bitmap copied = new Roaring64Bitmap(), sealed = new Roaring64Bitmap();

        Tracker(Roaring64Bitmap dirty, List<String> events) {
            this.mem = dirty.clone();
            this.persisted = dirty.clone();
            this.events = events;
        }

        Tracker(Roaring64Bitmap dirty) {
            this(dirty, Collections.synchronizedList(new ArrayList<>()));
        }

        @Override
        public synchronized void onCopied(Extent e) {
            for (long b = e.start(); b < e.end(); b++) {
                assertTrue(mem.contains(b) && !copied.contains(b) && !sealed.contains(b), "block " + b + " copied twice or was never dirty");
                copied.addLong(b);
            }
            copiedSinceCheckpoint++;
        }

        @Override
        public synchronized void barrier() {
            sealed.or(copied);
            copied.clear();
            events.add("B");
        }

        @Override
        public synchronized void checkpoint() {
            mem.andNot(sealed);
            sealed.clear();
            persisted = mem.clone();
            checkpoints++;
            copiedSinceCheckpoint = 0;
            events.add("C");
        }

        /** Copied and not yet cleared (waiting for a barrier and its flush). */
        synchronized Roaring64Bitmap pending() {
            Roaring64Bitmap p = copied.clone();
            p.or(sealed);
            return p;
        }
    }

    /** A fixed window (every test that names a window means that many copies in flight; WindowControlTest and AdaptiveResyncTest cover the adaptive one). */
    static Resync.Options opts(long blocksPerCopy, long copiesPerCheckpoint) {
        return Resync.Options.DEFAULT.withMaxBlocksPerCopy(blocksPerCopy)
                .withCheckpointBytes(blocksPerCopy * BS * copiesPerCheckpoint).withCheckpointMillis(3_600_000)
                .withAdaptiveWindow(false);
    }

    @Test
    void copiesExactlyTheDirtyBlocks() throws Exception {
        Mirror m = new Mirror(1, 60, true);
        assertFalse(m.identical());
        Tracker t = new Tracker(m.dirty);
        Resync r = Resync.of(m.p, m.s, m.lock, m.dirty, RateLimiter.unlimited(), t, opts(8, 4));
        assertEquals(Progress.State.IDLE, r.progress().state());
        Progress pr = r.run();
        assertEquals(Progress.State.DONE, pr.state(), String.valueOf(pr.failure()));
        assertTrue(m.identical());
        assertTrue(t.mem.isEmpty());
        assertTrue(t.persisted.isEmpty());
        assertEquals(m.dirtyBlocks() * BS, m.ss.bytesWritten(), "resync is minimal");
        assertEquals(m.dirtyBlocks() * BS, m.ps.bytesRead());
        assertEquals(m.dirtyBlocks(), pr.blocksDone());
        assertEquals(m.dirtyBlocks(), pr.blocksTotal());
        assertEquals(m.dirtyBlocks() * BS, pr.bytesCopied());
        assertEquals(0, pr.etaSeconds());
        assertEquals(1.0, pr.fraction());
        assertEquals(t.checkpoints, pr.checkpoints());
        assertTrue(t.checkpoints >= 2);
        assertNull(pr.failure());
        assertThrows(IllegalStateException.class, r::run, "a Resync runs once");
    }

    /**
     * The flush-before-checkpoint rule, stalling and pipelined: every block a checkpoint persists
     * as clean was written to the secondary before a flush was issued, and that flush completed
     * before the checkpoint. With pipelined checkpoints copies go on while the flush runs (writes
     * between a flush's start and its checkpoint), and those copies are not in that checkpoint.
     */
    @Test
    void flushesTheSecondaryBeforeEveryCheckpoint() throws Exception {
        for (boolean pipelined : new boolean[] {false, true}) {
            Mirror m = new Mirror(2, 80, false);
            List<String> events = Collections.synchronizedList(new ArrayList<>());
            Map<Long, Integer> writtenAt = new java.util.concurrent.ConcurrentHashMap<>();
            int[] lastFlushStart = {-1}, lastFlushEnd = {-1};
            BlockIO recording = new StoreBlockIO(m.ss, 0, BS, BLOCKS) {
                @Override
                public void write(long block, ByteBuffer src, boolean fua) throws IOException {
                    long n = src.remaining() / BS;
                    super.write(block, src, fua);
                    synchronized (events) {
                        for (long b = block; b < block + n; b++) writtenAt.put(b, events.size());
                        events.add("W");
                    }
                }

                @Override
                public void flush() throws IOException {
                    synchronized (events) {
                        lastFlushStart[0] = events.size();
                        events.add("S");
                    }
                    try {
                        Thread.sleep(3); // copies go on meanwhile when pipelined
                    } catch (InterruptedException e) {
                        throw new IOException(e);
                    }
                    super.flush();
                    synchronized (events) {
                        lastFlushEnd[0] = events.size();
                        events.add("F");
                    }
                }
            };
            List<String> violations = Collections.synchronizedList(new ArrayList<>());
            int[] writesDuringFlushes = {0};
            Tracker t = new Tracker(m.dirty, events) {
                @Override
                public synchronized void checkpoint() {
                    Roaring64Bitmap before = persisted.clone();
                    super.checkpoint();
                    before.andNot(persisted); // newly persisted as clean
                    synchronized (events) {
                        int s0 = lastFlushStart[0];
                        if (lastFlushEnd[0] < s0) violations.add("checkpoint before its flush completed");
                        before.forEach(b -> {
                            Integer w = writtenAt.get(b);
                            if (w == null || w > s0) violations.add("block " + b + " persisted clean, written at " + w + ", flush issued at " + s0);
                        });
                        for (int i = s0 + 1; i < events.size(); i++) if (events.get(i).equals("W")) writesDuringFlushes[0]++;
                    }
                }
            };
            Progress pr = Resync.of(m.p, recording, m.lock, m.dirty, null, t, opts(4, 3).withWindow(4).withPipelinedCheckpoints(pipelined)).run();
            assertEquals(Progress.State.DONE, pr.state(), String.valueOf(pr.failure()));
            assertTrue(t.checkpoints > 3);
            assertTrue(violations.isEmpty(), (pipelined ? "pipelined: " : "stalling: ") + violations);
            assertTrue(t.mem.isEmpty() && t.persisted.isEmpty());
            assertTrue(m.identical());
            if (pipelined) {
                assertTrue(writesDuringFlushes[0] > 0, "pipelined checkpoints never overlapped a copy: " + events);
            } else {
                assertEquals(0, writesDuringFlushes[0], "a stalling checkpoint had copies in flight: " + events);
            }
        }
    }

    @Test
    void concurrentApplicationWritesNeverLoseToStaleCopies() throws Exception {
        for (long seed = 10; seed < 13; seed++) {
            Mirror m = new Mirror(seed, 150, true);
            Tracker t = new Tracker(m.dirty);
            Resync r = Resync.of(m.p, m.s, m.lock, m.dirty, null, t, opts(4, 16));
            AtomicBoolean stop = new AtomicBoolean();
            AtomicInteger writes = new AtomicInteger();
            AtomicReference<Throwable> err = new AtomicReference<>();
            List<Thread> writers = new ArrayList<>();
            for (int w = 0; w < 4; w++) {
                long ws = seed * 100 + w;
                Thread th = new Thread(() -> {
                    Random rnd = new Random(ws);
                    try {
                        // keep writing until resync is done, and at least a few hundred writes
                        while (!stop.get() || writes.get() < 400) {
                            // half the writes aim at the first dirty region so they collide with copies
                            long b = rnd.nextBoolean() ? m.dirty.first() + rnd.nextInt(64) : rnd.nextInt((int) BLOCKS - 16);
                            b = Math.min(b, BLOCKS - 16);
                            int n = 1 + rnd.nextInt(16);
                            byte[] d = new byte[n * BS];
                            rnd.nextBytes(d);
                            try (RangeLock.Held h = m.lock.lock(b, n)) {
                                m.p.write(b, ByteBuffer.wrap(d), false);
                                Thread.yield(); // widen the window between the two legs
                                m.s.write(b, ByteBuffer.wrap(d), false);
                            }
                            writes.incrementAndGet();
                        }
                    } catch (Throwable e) {
                        err.set(e);
                    }
                });
                writers.add(th);
                th.start();
            }
            r.start();
            Progress pr = r.awaitDone(60, TimeUnit.SECONDS);
            stop.set(true);
            for (Thread th : writers) {
                th.join(60_000);
            }
            assertNull(err.get());
            assertEquals(Progress.State.DONE, pr.state(), String.valueOf(pr.failure()));
            assertTrue(writes.get() >= 400);
            assertTrue(m.identical(), "legs differ after resync with concurrent writes (seed " + seed + ")");
        }
    }

    @Test
    void secondaryFailsThenResumesMinimally() throws Exception {
        Mirror m = new Mirror(3, 120, true);
        long dirty = m.dirtyBlocks();
        long perCopy = 16;
        Tracker t = new Tracker(m.dirty);
        int interruptions = 0;
        Roaring64Bitmap remaining = m.dirty;
        for (long failAfter : new long[] {7, 5, 11}) {
            m.ss.failWritesAfter(failAfter);
            Progress pr = Resync.of(m.p, m.s, m.lock, remaining, null, t, opts(perCopy, 4)).run();
            assertEquals(Progress.State.FAILED, pr.state());
            assertInstanceOf(IOException.class, pr.failure());
            assertTrue(pr.failure().getMessage().contains("injected"), pr.failure().getMessage());
            interruptions++;
            m.ss.failWritesAfter(-1);
            // the failure path flushed and checkpointed what was copied
            assertEquals(t.mem, t.persisted);
            remaining = t.persisted.clone();
        }
        Progress pr = Resync.of(m.p, m.s, m.lock, remaining, null, t, opts(perCopy, 4)).run();
        assertEquals(Progress.State.DONE, pr.state());
        assertTrue(m.identical());
        long written = m.ss.bytesWritten();
        assertTrue(written >= dirty * BS);
        assertTrue(written <= (dirty + interruptions * perCopy) * BS,
                "wrote " + written / BS + " blocks for " + dirty + " dirty and " + interruptions + " interruptions");
    }

    /**
     * The gateway vanishes mid-resync: no checkpoint after the failed flush, the copies since the
     * last good one stay dirty, and a resume redoes at most what the last checkpoint did not
     * cover: one interval plus the copy that crossed it when checkpoints stall; with pipelined
     * checkpoints also the interval whose flush was still running and the copies then in flight.
     */
    @Test
    void secondaryVanishesAndResumeRedoesAtMostOneCheckpointInterval() throws Exception {
        for (boolean pipelined : new boolean[] {false, true}) {
            Mirror m = new Mirror(4, 120, true);
            long dirty = m.dirtyBlocks();
            long perCopy = 8;
            long copiesPerCheckpoint = 5;
            int window = 4;
            int[] checkpointsBeforeOutage = {-1};
            Tracker t = new Tracker(m.dirty) {
                int n;

                @Override
                public synchronized void onCopied(Extent e) {
                    super.onCopied(e);
                    if (++n == 23) {
                        checkpointsBeforeOutage[0] = checkpoints;
                        m.ss.setOffline(true); // the gateway went away: writes and flushes fail
                    }
                }
            };
            Resync.Options o = opts(perCopy, copiesPerCheckpoint).withWindow(window).withPipelinedCheckpoints(pipelined);
            Progress pr = Resync.of(m.p, m.s, m.lock, m.dirty, null, t, o).run();
            assertEquals(Progress.State.FAILED, pr.state());
            assertNotNull(pr.failure());
            assertTrue(t.checkpoints >= 1);
            if (!pipelined) assertEquals(checkpointsBeforeOutage[0], t.checkpoints, "no checkpoint after the flush failed");
            assertFalse(t.pending().isEmpty(), "copies since the last checkpoint are pending");
            assertEquals(t.mem, t.persisted, "and not persisted as done");
            Roaring64Bitmap pendingStillDirty = t.pending();
            pendingStillDirty.andNot(t.persisted);
            assertTrue(pendingStillDirty.isEmpty(), "every pending copy is still dirty in the persisted log");
            m.ss.setOffline(false);
            // a restarted engine resumes from what was persisted
            Progress pr2 = Resync.of(m.p, m.s, m.lock, t.persisted, null, new Tracker(t.persisted), o).run();
            assertEquals(Progress.State.DONE, pr2.state());
            assertTrue(m.identical());
            long redoCopies = pipelined ? 2 * copiesPerCheckpoint + window : copiesPerCheckpoint + 1;
            assertTrue(m.ss.bytesWritten() <= (dirty + perCopy * redoCopies) * BS,
                    (pipelined ? "pipelined" : "stalling") + ": wrote " + m.ss.bytesWritten() / BS + " blocks for " + dirty + " dirty");
        }
    }

    @Test
    void cancelMidwayThenResume() throws Exception {
        Mirror m = new Mirror(5, 100, true);
        long dirty = m.dirtyBlocks();
        AtomicReference<Resync> ref = new AtomicReference<>();
        Tracker t = new Tracker(m.dirty) {
            int n;

            @Override
            public synchronized void onCopied(Extent e) {
                super.onCopied(e);
                if (++n == 9) {
                    ref.get().cancel();
                }
            }
        };
        Resync r = Resync.of(m.p, m.s, m.lock, m.dirty, null, t, opts(8, 4));
        ref.set(r);
        Progress pr = r.run();
        assertEquals(Progress.State.CANCELLED, pr.state());
        assertTrue(pr.blocksDone() > 0 && pr.blocksDone() < dirty);
        assertEquals(t.mem, t.persisted, "cancel flushes and checkpoints what was copied");
        assertFalse(m.identical());
        Progress pr2 = Resync.of(m.p, m.s, m.lock, t.persisted, null, t, opts(8, 4)).run();
        assertEquals(Progress.State.DONE, pr2.state());
        assertEquals(dirty, pr.blocksDone() + pr2.blocksDone());
        assertTrue(m.identical());
        assertEquals(dirty * BS, m.ss.bytesWritten());
    }

    @Test
    void pauseResumeAndCancelFromAnotherThread() throws Exception {
        Mirror m = new Mirror(6, 100, true);
        AtomicReference<Resync> ref = new AtomicReference<>();
        long[] reported = {0};
        Tracker t = new Tracker(m.dirty) {
            int n;

            @Override
            public synchronized void onCopied(Extent e) {
                super.onCopied(e);
                reported[0] += e.count();
                if (++n == 5) {
                    ref.get().pause();
                }
            }
        };
        Resync r = Resync.of(m.p, m.s, m.lock, m.dirty, null, t, opts(4, 4));
        ref.set(r);
        r.start();
        Progress p = waitFor(r, Progress.State.PAUSED);
        assertEquals(reported[0], p.blocksDone());
        Thread.sleep(20);
        assertEquals(p.blocksDone(), r.progress().blocksDone(), "nothing is copied while paused");
        r.resume();
        r.cancel();
        Progress done = r.awaitDone();
        assertEquals(Progress.State.CANCELLED, done.state());
        assertEquals(t.mem, t.persisted);
        Progress pr2 = Resync.of(m.p, m.s, m.lock, t.persisted, null, t, opts(4, 4)).run();
        assertEquals(Progress.State.DONE, pr2.state());
        assertTrue(m.identical());
    }

    @Test
    void everyCheckpointedBlockSurvivesPowerLossOfTheSecondary() throws Exception {
        for (long seed = 20; seed < 30; seed++) {
            Mirror m = new Mirror(seed, 120, false); // secondary is zeroes, primary random where dirty
            Random rnd = new Random(seed);
            AtomicReference<FaultyStore> rebooted = new AtomicReference<>();
            Tracker t = new Tracker(m.dirty) {
                @Override
                public synchronized void onCopied(Extent e) {
                    super.onCopied(e);
                    // power fails in the middle of a checkpoint interval, with copies in flight
                    if (checkpoints >= 3 && copiedSinceCheckpoint == 3 && rebooted.get() == null) {
                        rebooted.set(m.ss.powerLoss(rnd));
                    }
                }
            };
            Progress pr = Resync.of(m.p, m.s, m.lock, m.dirty, null, t, opts(8, 5)).run();
            assertEquals(Progress.State.FAILED, pr.state(), "the old store is gone after power loss");
            assertTrue(t.checkpoints >= 3);
            FaultyStore after = rebooted.get();
            assertNotNull(after);
            byte[] prim = m.ps.image();
            byte[] sec = after.image();
            Roaring64Bitmap checkpointed = m.dirty.clone();
            checkpointed.andNot(t.persisted);
            assertTrue(checkpointed.getLongCardinality() > 0);
            checkpointed.forEach(b -> assertArrayEquals(
                    Arrays.copyOfRange(prim, (int) (b * BS), (int) ((b + 1) * BS)),
                    Arrays.copyOfRange(sec, (int) (b * BS), (int) ((b + 1) * BS)),
                    "block " + b + " was checkpointed as copied but is not on the secondary after power loss"));
            // and resuming from the persisted log converges
            m.ss = after;
            m.s = new StoreBlockIO(after, 0, BS, BLOCKS);
            assertEquals(Progress.State.DONE, Resync.of(m.p, m.s, m.lock, t.persisted, null, null, opts(8, 5)).run().state());
            assertTrue(m.identical());
        }
    }

    @Test
    void rateLimitedResyncWithFakeClock() throws Exception {
        Mirror m = new Mirror(7, 50, true);
        RateLimiterTest.FakeClock clock = new RateLimiterTest.FakeClock();
        RateLimiter lim = new RateLimiter(1 << 20, clock);
        long t0 = clock.now;
        // one copy in flight: the fake clock moves only on the loop's thread (the limiter), so a copy
        // completing on a window thread reads a time in step with it only if the loop waits for it
        Progress pr = Resync.of(m.p, m.s, m.lock, m.dirty, lim, null, opts(16, 4).withClock(clock).withWindow(1)).run();
        assertEquals(Progress.State.DONE, pr.state());
        double seconds = (clock.now - t0) / 1e9;
        double expected = m.dirtyBlocks() * BS / (double) (1 << 20);
        assertTrue(seconds >= expected - 0.2 && seconds <= expected + 0.1, "took " + seconds + " s, expected ~" + expected);
        assertTrue(pr.bytesPerSecond() > 0.8 * (1 << 20) && pr.bytesPerSecond() < 1.3 * (1 << 20), "rate " + pr.bytesPerSecond());
        assertTrue(m.identical());
    }

    @Test
    void badInputIsRejectedWithOneLine() {
        FaultyStore a = new FaultyStore("a", 4096 * 16);
        FaultyStore b = new FaultyStore("b", 4096 * 32);
        BlockIO pa = new StoreBlockIO(a, 0, 4096, 16);
        BlockIO pb = new StoreBlockIO(b, 0, 4096, 32);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> new Resync(pa, pb, new RangeLock(), List.of(), null, null));
        assertTrue(e.getMessage().contains("legs differ") && !e.getMessage().contains("\n"), e.getMessage());
        BlockIO pb16 = new StoreBlockIO(b, 0, 4096, 16);
        assertThrows(IllegalArgumentException.class,
                () -> new Resync(pa, pb16, new RangeLock(), List.of(new Extent(10, 10)), null, null));
        assertThrows(IllegalArgumentException.class,
                () -> new Resync(pa, pb16, new RangeLock(), List.of(new Extent(5, 1), new Extent(2, 1)), null, null));
    }

    static Progress waitFor(Resync r, Progress.State s) throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
        while (System.nanoTime() < deadline) {
            Progress p = r.progress();
            if (p.state() == s) {
                return p;
            }
            Thread.sleep(1);
        }
        throw new AssertionError("resync never reached " + s + ": " + r.progress());
    }
}
