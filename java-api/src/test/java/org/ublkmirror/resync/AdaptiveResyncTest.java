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

    static Outcome run(boolean adaptive) throws Exception {
        Mirror m = new Mirror(51, 160, true);
        long dirty = m.dirtyBlocks();
        OneAtATime s = new OneAtATime(m);
        Tracker t = new Tracker(m.dirty);
        Resync r = Resync.of(m.p, s, m.lock, m.dirty, null, t,
                ResyncTest.opts(16, 20).withWindow(16).withAdaptiveWindow(adaptive));
        Progress pr = r.run();
        assertEquals(Progress.State.DONE, pr.state(), "state: " + pr);
        assertTrue(m.identical(), "legs differ after the resync");
        assertTrue(t.mem.isEmpty() && t.persisted.isEmpty(), "blocks left dirty");
        assertEquals(m.dirty, s.written, "the resync wrote other blocks than the dirty ones");
        assertEquals(dirty * ResyncTest.BS, m.ss.bytesWritten(), "every dirty block once");
        assertEquals(adaptive, r.timing().windowStats().adaptive());
        return new Outcome(r.timing().windowStats(), pr.blocksDone(), s.maxInFlight.get());
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
