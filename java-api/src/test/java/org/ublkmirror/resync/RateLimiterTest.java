package org.ublkmirror.resync;

import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Driven by a fake clock: sleeping advances fake time, so nothing here depends on the wall clock. */
class RateLimiterTest {

    static final class FakeClock implements RateLimiter.Clock {
        long now = 1_000_000_000L;
        final List<Long> sleeps = new ArrayList<>();
        Runnable onSleep = () -> { };

        @Override
        public long nanoTime() {
            return now;
        }

        @Override
        public void sleepNanos(long nanos) throws InterruptedException {
            if (Thread.interrupted()) {
                throw new InterruptedException();
            }
            sleeps.add(nanos);
            now += nanos;
            onSleep.run();
        }

        double seconds(long since) {
            return (now - since) / 1e9;
        }
    }

    @Test
    void unlimitedNeverSleeps() throws Exception {
        FakeClock c = new FakeClock();
        RateLimiter r = new RateLimiter(0, c);
        for (int i = 0; i < 1000; i++) {
            r.acquire(1 << 20);
        }
        assertTrue(c.sleeps.isEmpty());
    }

    @Test
    void longRunRateIsExact() throws Exception {
        FakeClock c = new FakeClock();
        long rate = 1_000_000;
        RateLimiter r = new RateLimiter(rate, c);
        long t0 = c.now;
        for (int i = 0; i < 200; i++) {
            r.acquire(50_000); // 10 MB in total
        }
        // the initial bucket (100 ms worth) passes at once; the rest at exactly the rate
        double s = c.seconds(t0);
        assertTrue(s >= 9.85 && s <= 9.95, "10 MB at 1 MB/s took " + s + " s");
        for (long sl : c.sleeps) {
            assertTrue(sl <= RateLimiter.MAX_SLICE_NANOS);
        }
    }

    @Test
    void requestsLargerThanTheBucketPassAndPayDebt() throws Exception {
        FakeClock c = new FakeClock();
        RateLimiter r = new RateLimiter(1000, c); // bucket is 100 bytes
        long t0 = c.now;
        r.acquire(5000); // full bucket -> passes, 4900 bytes of debt
        r.acquire(100);  // waits 4.9 s of debt + 0.1 s for its own 100 bytes
        assertEquals(5.0, c.seconds(t0), 0.01);
    }

    @Test
    void setRateTakesEffectForWaiters() throws Exception {
        FakeClock c = new FakeClock();
        RateLimiter r = new RateLimiter(1000, c);
        r.acquire(100); // drain the bucket
        // while the next caller waits, the operator lifts the limit
        c.onSleep = () -> r.setRate(0);
        long t0 = c.now;
        r.acquire(1_000_000);
        assertEquals(1, c.sleeps.size(), "one slice, then the new rate applies");
        assertTrue(c.seconds(t0) <= RateLimiter.MAX_SLICE_NANOS / 1e9);

        // and back to limited: 2 MB at 4 MB/s is ~0.5 s
        c.onSleep = () -> { };
        r.setRate(4_000_000);
        t0 = c.now;
        for (int i = 0; i < 40; i++) {
            r.acquire(50_000);
        }
        assertEquals(0.5, c.seconds(t0), 0.11);
    }

    @Test
    void raisingTheRateSpeedsUp() throws Exception {
        FakeClock c = new FakeClock();
        RateLimiter r = new RateLimiter(100_000, c);
        long t0 = c.now;
        for (int i = 0; i < 10; i++) {
            r.acquire(10_000);
        }
        double slow = c.seconds(t0);
        r.setRate(1_000_000);
        t0 = c.now;
        for (int i = 0; i < 10; i++) {
            r.acquire(10_000);
        }
        double fast = c.seconds(t0);
        assertTrue(fast < slow / 5, "slow=" + slow + " fast=" + fast);
    }

    @Test
    void interruptibleAndAbortable() throws Exception {
        FakeClock c = new FakeClock();
        RateLimiter r = new RateLimiter(10, c);
        r.acquire(10);
        Thread.currentThread().interrupt();
        assertThrows(InterruptedException.class, () -> r.acquire(10));
        assertFalse(Thread.currentThread().isInterrupted());

        int[] calls = {0};
        assertFalse(r.acquire(10, () -> ++calls[0] > 3));
        assertEquals(3, c.sleeps.size());
    }

    @Test
    void rejectsNegative() {
        assertThrows(IllegalArgumentException.class, () -> new RateLimiter(-1));
        assertThrows(IllegalArgumentException.class, () -> RateLimiter.unlimited().setRate(-5));
    }
}
