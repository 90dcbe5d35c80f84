package org.ublkmirror.link;

import org.junit.jupiter.api.Test;

import java.util.Random;

import static org.junit.jupiter.api.Assertions.*;

class BackoffTest {
    @Test
    void doublesFromTheMinimumUpToTheCapWithJitterInTheUpperHalf() {
        Backoff b = new Backoff(100, 3000, new Random(7));
        assertEquals(100, b.step(0));
        assertEquals(200, b.step(1));
        assertEquals(1600, b.step(4));
        assertEquals(3000, b.step(5));
        assertEquals(3000, b.step(1000), "no overflow for many attempts");
        boolean sawLow = false, sawHigh = false;
        for (int attempt = 0; attempt < 40; attempt++) {
            for (int i = 0; i < 200; i++) {
                long d = b.delay(attempt), s = b.step(attempt);
                assertTrue(d >= s / 2 && d <= s && d <= 3000, "delay " + d + " for step " + s);
                if (attempt > 10 && d < 2000) sawLow = true;
                if (attempt > 10 && d > 2800) sawHigh = true;
            }
        }
        assertTrue(sawLow && sawHigh, "jitter spreads delays over [max/2, max]");
    }

    @Test
    void badIntervalsAreRefused() {
        assertThrows(IllegalArgumentException.class, () -> new Backoff(0, 10, new Random()));
        assertThrows(IllegalArgumentException.class, () -> new Backoff(100, 10, new Random()));
    }
}
