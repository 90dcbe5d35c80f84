package org.ublkmirror.resync;

import org.junit.jupiter.api.Test;
import org.roaringbitmap.longlong.Roaring64Bitmap;
import org.ublkmirror.leg.BlockIO;
import org.ublkmirror.leg.StoreBlockIO;
import org.ublkmirror.resync.ResyncTest.Mirror;
import org.ublkmirror.resync.ResyncTest.Tracker;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.ublkmirror.resync.ResyncTest.BLOCKS;
import static org.ublkmirror.resync.ResyncTest.BS;

/** The resync window: several copies in flight, completing in any order. */
class ResyncWindowTest {

    /** A secondary whose writes take a while; records the most writes ever in flight at once and every block written. */
    static class SlowSecondary extends StoreBlockIO {
        final AtomicInteger inFlight = new AtomicInteger();
        final AtomicInteger maxInFlight = new AtomicInteger();
        final Roaring64Bitmap written = new Roaring64Bitmap();

        SlowSecondary(Mirror m) {
            super(m.ss, 0, BS, BLOCKS);
        }

        @Override
        public void write(long block, ByteBuffer src, boolean fua) throws IOException {
            int n = inFlight.incrementAndGet();
            maxInFlight.accumulateAndGet(n, Math::max);
            try {
                beforeWrite(block);
                long blocks = src.remaining() / BS;
                super.write(block, src, fua);
                synchronized (written) {
                    written.addRange(block, block + blocks);
                }
            } finally {
                inFlight.decrementAndGet();
            }
        }

        void beforeWrite(long block) throws IOException {
            try {
                Thread.sleep(2);
            } catch (InterruptedException e) {
                throw new IOException("interrupted", e);
            }
        }
    }

    @Test
    void copiesOverlapAndCopyExactlyTheDirtyBlocks() throws Exception {
        Mirror m = new Mirror(40, 120, true);
        long dirty = m.dirtyBlocks();
        SlowSecondary s = new SlowSecondary(m);
        Tracker t = new Tracker(m.dirty);
        Progress pr = Resync.of(m.p, s, m.lock, m.dirty, null, t, ResyncTest.opts(8, 6).withWindow(4)).run();
        assertEquals(Progress.State.DONE, pr.state());
        assertTrue(s.maxInFlight.get() >= 2, "copies never overlapped: max in flight " + s.maxInFlight.get());
        assertTrue(s.maxInFlight.get() <= 4, "window exceeded: " + s.maxInFlight.get());
        assertTrue(m.identical());
        assertEquals(m.dirty, s.written, "resync wrote exactly the dirty blocks");
        assertEquals(dirty * BS, m.ss.bytesWritten());
        assertEquals(dirty, pr.blocksDone());
        assertTrue(t.mem.isEmpty() && t.persisted.isEmpty());
    }

    /**
     * Pipelined checkpoints: the copies go on while a checkpoint's flush runs (a slow flush here);
     * each flush is a checkpoint's. A failing flush stops the resync like a failing copy, and
     * nothing copied after the last good checkpoint is persisted as clean: every block the
     * persisted log calls clean survives a power loss of the secondary.
     */
    @Test
    void pipelinedCheckpointsRunBesideTheCopiesAndAFailingOneStopsTheResync() throws Exception {
        Mirror m = new Mirror(44, 200, true);
        AtomicInteger flushes = new AtomicInteger(), writesDuringFlush = new AtomicInteger();
        java.util.concurrent.atomic.AtomicBoolean flushing = new java.util.concurrent.atomic.AtomicBoolean();
        SlowSecondary s = new SlowSecondary(m) {
            @Override
            void beforeWrite(long block) throws IOException {
                if (flushing.get()) writesDuringFlush.incrementAndGet();
                super.beforeWrite(block);
            }

            @Override
            public void flush() throws IOException {
                flushes.incrementAndGet();
                flushing.set(true);
                try {
                    Thread.sleep(15);
                } catch (InterruptedException e) {
                    throw new IOException(e);
                } finally {
                    flushing.set(false);
                }
                super.flush();
            }
        };
        Tracker t = new Tracker(m.dirty);
        Resync r = Resync.of(m.p, s, m.lock, m.dirty, null, t, ResyncTest.opts(8, 6).withWindow(4));
        Progress pr = r.run();
        assertEquals(Progress.State.DONE, pr.state());
        assertTrue(m.identical());
        Resync.Timing tm = r.timing();
        assertTrue(tm.pipelined() && tm.backgroundCheckpoints() > 0, "background checkpoints: " + tm);
        assertTrue(writesDuringFlush.get() > 0, "no copy ran while a checkpoint flushed");
        assertEquals(pr.checkpoints(), flushes.get(), "every flush is a checkpoint's");
        assertEquals(pr.checkpoints(), t.checkpoints);
        assertTrue(t.mem.isEmpty() && t.persisted.isEmpty());

        // the third flush fails: the resync fails; what is persisted clean was flushed by a checkpoint
        Mirror m2 = new Mirror(45, 200, true);
        AtomicInteger n = new AtomicInteger();
        SlowSecondary bad = new SlowSecondary(m2) {
            @Override
            public void flush() throws IOException {
                if (n.incrementAndGet() == 3) throw new IOException("flush failed (injected)");
                super.flush();
            }
        };
        Tracker t2 = new Tracker(m2.dirty);
        Progress p2 = Resync.of(m2.p, bad, m2.lock, m2.dirty, null, t2, ResyncTest.opts(8, 6).withWindow(4)).run();
        assertEquals(Progress.State.FAILED, p2.state());
        assertTrue(p2.failure().getMessage().contains("injected"), String.valueOf(p2.failure()));
        assertTrue(t2.persisted.getLongCardinality() < m2.dirty.getLongCardinality(), "a checkpoint before the failure");
        // every block the persisted log calls clean survives a power loss of the secondary (it was flushed)
        org.ublkmirror.leg.FaultyStore after = m2.ss.powerLoss(new java.util.Random(7));
        BlockIO sAfter = new StoreBlockIO(after, 0, BS, BLOCKS);
        org.roaringbitmap.longlong.LongIterator it = m2.dirty.getLongIterator();
        while (it.hasNext()) {
            long b = it.next();
            if (!t2.persisted.contains(b)) {
                ByteBuffer x = ByteBuffer.allocate(BS), y = ByteBuffer.allocate(BS);
                m2.p.read(b, x);
                sAfter.read(b, y);
                assertEquals(x.flip(), y.flip(), "block " + b + " persisted clean but not durable on the secondary");
            }
        }
    }

    @Test
    void windowOfOneNeverOverlaps() throws Exception {
        Mirror m = new Mirror(41, 60, true);
        SlowSecondary s = new SlowSecondary(m);
        Progress pr = Resync.of(m.p, s, m.lock, m.dirty, null, new Tracker(m.dirty), ResyncTest.opts(8, 6).withWindow(1)).run();
        assertEquals(Progress.State.DONE, pr.state());
        assertEquals(1, s.maxInFlight.get());
        assertTrue(m.identical());
    }

    /**
     * The first copy waits until the second completed, then fails: the checkpoint after the
     * failure must clear the second (completed out of order) and keep the first dirty.
     */
    @Test
    void outOfOrderCompletionThenFailureKeepsExactlyTheUncompletedCopyDirty() throws Exception {
        Mirror m = new Mirror(42, 120, true);
        long dirty = m.dirtyBlocks();
        List<Extent> copies = Extents.of(m.dirty, 8);
        Extent first = copies.get(0), second = copies.get(1);
        CountDownLatch secondDone = new CountDownLatch(1);
        SlowSecondary s = new SlowSecondary(m) {
            @Override
            public void write(long block, ByteBuffer src, boolean fua) throws IOException {
                super.write(block, src, fua);
                if (block == second.start()) secondDone.countDown();
            }

            @Override
            void beforeWrite(long block) throws IOException {
                if (block != first.start()) return;
                try {
                    if (!secondDone.await(10, TimeUnit.SECONDS)) throw new AssertionError("second copy never ran alongside the first");
                } catch (InterruptedException e) {
                    throw new IOException(e);
                }
                throw new IOException("injected: secondary lost the first copy");
            }
        };
        Tracker t = new Tracker(m.dirty);
        Progress pr = Resync.of(m.p, s, m.lock, m.dirty, null, t, ResyncTest.opts(8, 1000).withWindow(4)).run();
        assertEquals(Progress.State.FAILED, pr.state());
        assertTrue(pr.failure().getMessage().contains("injected"), pr.failure().getMessage());
        assertEquals(t.mem, t.persisted, "the failure path flushed and checkpointed the completed copies");
        for (long b = first.start(); b < first.end(); b++) assertTrue(t.persisted.contains(b), "uncompleted block " + b + " cleared");
        for (long b = second.start(); b < second.end(); b++) assertFalse(t.persisted.contains(b), "completed block " + b + " still dirty");
        // every block left dirty is exactly what was not written
        Roaring64Bitmap notWritten = m.dirty.clone();
        notWritten.andNot(s.written);
        assertEquals(notWritten, t.persisted);

        // resume converges and copies only what was left
        SlowSecondary s2 = new SlowSecondary(m);
        Progress pr2 = Resync.of(m.p, s2, m.lock, t.persisted, null, t, ResyncTest.opts(8, 3).withWindow(4)).run();
        assertEquals(Progress.State.DONE, pr2.state());
        assertTrue(m.identical());
        assertEquals(notWritten, s2.written);
        assertEquals(dirty * BS, m.ss.bytesWritten(), "every dirty block written once in all");
    }

    /** The secondary fails after a few writes, several times, with copies in flight; each resume converges (both window modes). */
    @org.junit.jupiter.params.ParameterizedTest(name = "adaptive window {0}")
    @org.junit.jupiter.params.provider.ValueSource(booleans = {false, true})
    void interruptedWindowedResyncConverges(boolean adaptive) throws Exception {
        Mirror m = new Mirror(43, 150, true);
        long dirty = m.dirtyBlocks();
        Roaring64Bitmap original = m.dirty.clone();
        int window = 6;
        long perCopy = 8;
        Tracker t = new Tracker(m.dirty);
        Roaring64Bitmap remaining = m.dirty;
        int interruptions = 0;
        SlowSecondary s = new SlowSecondary(m);
        for (long failAfter : new long[] {9, 4, 13}) {
            m.ss.failWritesAfter(failAfter);
            Progress pr = Resync.of(m.p, s, m.lock, remaining, null, t, ResyncTest.opts(perCopy, 5).withWindow(window)
                    .withAdaptiveWindow(adaptive)).run();
            assertEquals(Progress.State.FAILED, pr.state());
            interruptions++;
            m.ss.failWritesAfter(-1);
            assertEquals(t.mem, t.persisted);
            remaining = t.persisted.clone();
        }
        Progress pr = Resync.of(m.p, s, m.lock, remaining, null, t, ResyncTest.opts(perCopy, 5).withWindow(window)
                .withAdaptiveWindow(adaptive)).run();
        assertEquals(Progress.State.DONE, pr.state());
        assertTrue(m.identical());
        assertTrue(t.persisted.isEmpty());
        Roaring64Bitmap outside = s.written.clone();
        outside.andNot(original);
        assertTrue(outside.isEmpty(), "resync wrote blocks that were never dirty: " + outside);
        long written = m.ss.bytesWritten();
        assertTrue(written >= dirty * BS);
        assertTrue(written <= (dirty + interruptions * window * perCopy) * BS,
                "wrote " + written / BS + " blocks for " + dirty + " dirty and " + interruptions + " interruptions");
    }

    @Test
    void windowMustBePositive() {
        IllegalArgumentException e = org.junit.jupiter.api.Assertions.assertThrows(IllegalArgumentException.class,
                () -> Resync.Options.DEFAULT.withWindow(0));
        assertTrue(e.getMessage().contains("window=0"), e.getMessage());
    }
}
