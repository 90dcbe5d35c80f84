package org.ublkmirror.resync;

import org.junit.jupiter.api.Test;
import org.ublkmirror.resync.ResyncTest.Mirror;
import org.ublkmirror.resync.ResyncTest.Tracker;
import org.ublkmirror.resync.ResyncWindowTest.SlowSecondary;

import java.io.IOException;
import java.util.concurrent.locks.ReentrantLock;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * A resync with the adaptive window over a secondary that serves one write at a time (a slow link:
 * every write queues behind the ones before it), side by side with the fixed window: the adaptive
 * one keeps few copies in flight, so a copy (and an application write beside it) waits far less,
 * and the legs still end identical with exactly the dirty blocks copied.
 */
class AdaptiveResyncTest {

    /**
     * One server: writes are served in turn, each taking 30 ms (a slow link: 16 blocks of 4 KiB
     * in 30 ms is about 17 Mbit/s; slower than WindowControl's least queueing allowance of 20 ms,
     * so the target is the copies' own latency).
     */
    static final class OneAtATime extends SlowSecondary {
        final ReentrantLock server = new ReentrantLock(true);

        OneAtATime(Mirror m) {
            super(m);
        }

        @Override
        void beforeWrite(long block) throws IOException {
            server.lock();
            try {
                Thread.sleep(30);
            } catch (InterruptedException e) {
                throw new IOException("interrupted", e);
            } finally {
                server.unlock();
            }
        }
    }

    record Outcome(WindowControl.Stats stats, long copied, int maxInFlight) {
    }

    /**
     * A whole resync of {@code m}'s dirty blocks to {@code s}: it ends DONE with the legs
     * identical, nothing left dirty, and every dirty block written once and no other.
     */
    static Resync runChecked(Mirror m, SlowSecondary s, Resync.Options o) throws Exception {
        long dirty = m.dirtyBlocks();
        Tracker t = new Tracker(m.dirty);
        Resync r = Resync.of(m.p, s, m.lock, m.dirty, null, t, o);
        Progress pr = r.run();
        assertEquals(Progress.State.DONE, pr.state(), "state: " + pr);
        assertTrue(m.identical(), "legs differ after the resync");
        assertTrue(t.mem.isEmpty() && t.persisted.isEmpty(), "blocks left dirty");
        assertEquals(m.dirty, s.written, "the resync wrote other blocks than the dirty ones");
        assertEquals(dirty * ResyncTest.BS, m.ss.bytesWritten(), "every dirty block once");
        assertEquals(dirty, pr.blocksDone());
        assertEquals(o.adaptive(), r.timing().windowStats().adaptive());
        return r;
    }

    static Outcome run(boolean adaptive) throws Exception {
        Mirror m = new Mirror(51, 160, true);
        OneAtATime s = new OneAtATime(m);
        Resync r = runChecked(m, s, ResyncTest.opts(16, 20).withWindow(16).withAdaptiveWindow(adaptive));
        return new Outcome(r.timing().windowStats(), r.progress().blocksDone(), s.maxInFlight.get());
    }

    /** Copies beside a checkpoint's flush (the secondary holds its writes while it flushes) are no window sample. */
    @Test
    void copiesBesideAFlushAreNoSample() throws Exception {
        Mirror m = new Mirror(52, 300, true);
        java.util.concurrent.atomic.AtomicInteger flushes = new java.util.concurrent.atomic.AtomicInteger();
        SlowSecondary s = new SlowSecondary(m) {
            @Override
            void beforeWrite(long block) {
                // fast writes: the only delay a copy sees is a flush
            }

            @Override
            public void flush() throws IOException {
                synchronized (m.ss) { // FaultyStore's monitor: its writes wait for this flush
                    try {
                        Thread.sleep(150);
                    } catch (InterruptedException e) {
                        throw new IOException(e);
                    }
                    flushes.incrementAndGet();
                    super.flush();
                }
            }
        };
        Resync r = runChecked(m, s, ResyncTest.opts(2, 40).withWindow(8).withAdaptiveWindow(true));
        WindowControl.Stats st = r.timing().windowStats();
        System.out.println("flushes " + flushes.get() + ", checkpoints " + r.progress().checkpoints() + ": " + st);
        assertTrue(r.timing().backgroundCheckpoints() > 0, "no checkpoint ran beside the copies: " + r.timing());
        assertTrue(st.besideFlush() > 0, "no copy was found beside a flush: " + st);
    }

    /** An operator lowers, then raises, the window of a running resync: the copies in flight follow at once. */
    @Test
    void theWindowChangesWhileTheResyncRuns() throws Exception {
        Mirror m = new Mirror(53, 200, true);
        OneAtATime s = new OneAtATime(m);
        Tracker t = new Tracker(m.dirty);
        Resync r = Resync.of(m.p, s, m.lock, m.dirty, null, t,
                ResyncTest.opts(4, 1000).withWindow(8).withAdaptiveWindow(false));
        r.start();
        long end = System.currentTimeMillis() + 10_000;
        while (s.maxInFlight.get() < 8 && System.currentTimeMillis() < end) Thread.sleep(5);
        assertEquals(8, s.maxInFlight.get(), "the fixed window of 8 was not reached");
        r.windowControl().reconfigure(2, false);
        end = System.currentTimeMillis() + 10_000; // the 8 in flight drain through the one-at-a-time secondary
        while (s.inFlight.get() > 2 && System.currentTimeMillis() < end) Thread.sleep(2);
        s.maxInFlight.set(s.inFlight.get());
        Thread.sleep(300);
        assertTrue(s.maxInFlight.get() <= 2, "lowered to 2, still " + s.maxInFlight.get() + " in flight");
        r.windowControl().reconfigure(5, false);
        end = System.currentTimeMillis() + 5_000;
        while (s.maxInFlight.get() < 5 && System.currentTimeMillis() < end) Thread.sleep(5);
        assertEquals(5, s.maxInFlight.get(), "raised to 5, the copies in flight did not follow");
        r.cancel();
        Progress pr = r.awaitDone();
        assertEquals(Progress.State.CANCELLED, pr.state());
        assertEquals(t.mem, t.persisted, "what was checkpointed is what the log says");
    }

    @Test
    void theAdaptiveWindowKeepsTheQueueShort() throws Exception {
        Outcome fixed = run(false);
        Outcome adaptive = run(true);
        System.out.println("one-at-a-time secondary, 30 ms a write: fixed " + fixed + "\n  adaptive " + adaptive);
        assertTrue(fixed.stats().mean() >= 12, "fixed window 16 did not keep 16 in flight: " + fixed);
        assertTrue(adaptive.stats().mean() <= 5, "adaptive window kept too many in flight: " + adaptive);
        assertTrue(adaptive.stats().highest() < 16, "adaptive window reached its ceiling: " + adaptive);
        assertTrue(adaptive.stats().meanLatency() * 2 < fixed.stats().meanLatency(),
                "a copy waited about as long with the adaptive window: " + adaptive.stats().meanLatency() / 1e6
                        + " ms against " + fixed.stats().meanLatency() / 1e6 + " ms");
        assertEquals(fixed.copied(), adaptive.copied());
    }
}
