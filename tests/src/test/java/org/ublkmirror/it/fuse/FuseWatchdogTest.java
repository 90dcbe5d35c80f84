package org.ublkmirror.it.fuse;

import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.ublkmirror.frontend.fuse.FuseFrontend;

import java.io.IOException;
import java.time.Duration;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** A write stuck in the target: the watchdog aborts the connection and the writer gets an error instead of hanging. */
class FuseWatchdogTest {

    @BeforeAll
    static void machine() throws IOException {
        Root.require("losetup", "dd");
    }

    @Test
    void stuckWriteIsAborted() throws Exception {
        CountDownLatch gate = new CountDownLatch(1);
        Rig rig = Rig.start(16L << 20, FuseFrontend.Options.defaults().withWatchdogTimeout(Duration.ofSeconds(2)));
        try {
            rig.target.writeGate = gate;
            long t0 = System.nanoTime();
            Root.Result r = Root.run(120, "dd", "if=/dev/zero", "of=" + rig.device(), "bs=4k", "count=1",
                    "oflag=direct", "status=none");
            long ms = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - t0);
            assertNotEquals(0, r.exit(), "the stuck write failed: " + r.out());
            assertTrue(rig.dev.isAborted(), "watchdog aborted");
            assertTrue(ms >= 1500 && ms < 60_000, "aborted after the limit: " + ms + " ms");
            assertTrue(rig.dev.abortReason().contains("stuck"), rig.dev.abortReason());
        } finally {
            gate.countDown();
            rig.close();
        }
        assertFalse(rig.dev.isAttached(), "loop device released");
    }
}
