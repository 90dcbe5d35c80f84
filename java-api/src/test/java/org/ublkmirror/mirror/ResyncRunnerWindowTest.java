package org.ublkmirror.mirror;

import org.junit.jupiter.api.Test;
import org.ublkmirror.resync.WindowControl;

import static org.junit.jupiter.api.Assertions.*;

/**
 * The window control a resync's next copy pass gets ({@link ResyncRunner#controlForPass}): the
 * first pass makes one in the configured mode; later passes keep it, so what the window learned
 * of the link survives the pass boundary; an operator's change made between two passes (which
 * only sets the options) is applied to that same control.
 */
class ResyncRunnerWindowTest {
    static final long MS = 1_000_000L, COPY = 1 << 20;

    /** Copies of 1 MiB completing at a steady 1 ms: an adaptive window grows out of slow start. */
    static void learn(WindowControl c) {
        long t = 0;
        for (int i = 0; i < 6; i++) c.completed(COPY, MS, t += MS);
    }

    @Test
    void theFirstPassGetsANewControlInTheConfiguredMode() {
        WindowControl a = ResyncRunner.controlForPass(null, 8, true);
        assertTrue(a.isAdaptive());
        assertEquals(8, a.max());
        assertEquals(1, a.limit(), "adaptive starts at one copy");
        WindowControl f = ResyncRunner.controlForPass(null, 5, false);
        assertFalse(f.isAdaptive());
        assertEquals(5, f.limit(), "fixed is the configured window from the start");
    }

    @Test
    void laterPassesKeepWhatTheWindowLearned() {
        WindowControl c = ResyncRunner.controlForPass(null, 16, true);
        learn(c);
        int learned = c.limit();
        assertTrue(learned > 1, "the window grew: " + learned);
        WindowControl next = ResyncRunner.controlForPass(c, 16, true);
        assertSame(c, next, "the same control for the next pass");
        assertEquals(learned, next.limit(), "no new slow start at the pass boundary");
    }

    @Test
    void aChangeBetweenPassesReconfiguresTheSameControl() {
        WindowControl c = ResyncRunner.controlForPass(null, 16, true);
        learn(c);
        int learned = c.limit();
        // a lower ceiling: taken at once, the learned window capped by it
        WindowControl next = ResyncRunner.controlForPass(c, 4, true);
        assertSame(c, next);
        assertEquals(4, next.max());
        assertEquals(Math.min(4, learned), next.limit());
        // fixed: the ceiling from now on
        next = ResyncRunner.controlForPass(next, 9, false);
        assertSame(c, next);
        assertFalse(next.isAdaptive());
        assertEquals(9, next.limit());
        // back to adaptive with a higher ceiling: from where it is, no slow start back to one
        next = ResyncRunner.controlForPass(next, 12, true);
        assertSame(c, next);
        assertTrue(next.isAdaptive());
        assertEquals(12, next.max());
        assertEquals(9, next.limit());
    }
}
