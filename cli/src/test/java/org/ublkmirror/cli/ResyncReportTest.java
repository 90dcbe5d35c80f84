package org.ublkmirror.cli;

import org.junit.jupiter.api.Test;

import java.util.LinkedHashMap;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The one-line resync report `attach` and `resync --wait` print from the daemon's numbers. */
class ResyncReportTest {
    private static Map<String, Object> report(Object low, Object high) {
        Map<String, Object> r = new LinkedHashMap<>();
        r.put("bytes", 268435456L);
        r.put("ms", 11345L);
        r.put("mb_per_s", 23.7);
        r.put("copy_ms", 11339L);
        r.put("window", 16L);
        r.put("window_mode", "adaptive");
        r.put("window_mean", 5.2);
        r.put("window_low", 1L);
        r.put("window_high", 6L);
        r.put("copy_latency_ms", 29.1);
        r.put("copy_latency_base_ms", 33.8);
        if (low != null) r.put("copy_bytes_low", low);
        if (high != null) r.put("copy_bytes_high", high);
        r.put("checkpoints", 5L);
        r.put("pipelined", true);
        return r;
    }

    @Test
    void theReportSaysWhatSizesTheCopiesWereCutTo() {
        String cut = ResyncCmd.describe(report(131072L, 1048576L));
        assertTrue(cut.contains("window 16 adaptive (5.2 in flight on average, 1..6; copy latency 29.1 ms, unloaded 33.8 ms; copies of 128.0 KiB..1.0 MiB)"), cut);
        // one size only; numbers that came back through JSON as doubles
        String whole = ResyncCmd.describe(report(1048576.0, 1048576.0));
        assertTrue(whole.contains("unloaded 33.8 ms; copies of 1.0 MiB)"), whole);
        // a daemon that does not report them (older, or no copy made)
        String none = ResyncCmd.describe(report(null, null));
        assertTrue(none.contains("unloaded 33.8 ms)"), none);
        assertFalse(ResyncCmd.describe(report(0L, 0L)).contains("copies of"));
    }
}
