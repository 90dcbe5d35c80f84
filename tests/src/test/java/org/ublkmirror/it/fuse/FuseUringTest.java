package org.ublkmirror.it.fuse;

import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.ublkmirror.frontend.fuse.FuseFrontend;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * FUSE over io_uring: with the fuse module's enable_uring on while the device starts, requests
 * travel through the rings; data verifies, flushes and discards arrive, the device reads what the
 * backing file holds, and teardown leaves nothing behind. With io_uring off in the options the
 * same kernel setting leaves every request on /dev/fuse. enable_uring is put back as found.
 */
class FuseUringTest {
    private static final Path PARAM = Path.of("/sys/module/fuse/parameters/enable_uring");
    private static String was;

    @BeforeAll
    static void machine() throws IOException {
        Root.require("losetup", "fio", "blkdiscard");
        if (!Files.isWritable(PARAM)) {
            fail(PARAM + " is missing or read-only: this kernel has no FUSE over io_uring (CONFIG_FUSE_IO_URING, Linux 6.14+)");
        }
        was = Files.readString(PARAM).trim();
    }

    @AfterAll
    static void restore() throws IOException {
        if (was != null) Files.writeString(PARAM, was);
    }

    private static Rig startWithUring(long size, FuseFrontend.Options o) throws IOException {
        Files.writeString(PARAM, "Y");
        try {
            return Rig.start(size, o);
        } finally {
            Files.writeString(PARAM, was); // the connection keeps io_uring once negotiated
        }
    }

    @Test
    void requestsTravelThroughTheRingsAndVerify() throws Exception {
        Rig started;
        try (Rig rig = startWithUring(128L << 20, FuseFrontend.Options.defaults().withUring(2, 4))) {
            started = rig;
            assertTrue(rig.dev.uringActive(), "io_uring active: " + rig.dev.negotiated());
            assertTrue(rig.dev.negotiated().contains("io_uring"), rig.dev.negotiated());
            long before = rig.dev.uringRequestCount();
            Root.Result r = Root.run(600, "fio", "--name=v", "--filename=" + rig.device(), "--rw=randwrite",
                    "--bs=4k", "--iodepth=16", "--ioengine=libaio", "--direct=1", "--size=64M",
                    "--verify=crc32c", "--do_verify=1", "--verify_state_save=0");
            assertEquals(0, r.exit(), "fio:\n" + r.out());
            assertTrue(r.out().contains("err= 0"), "fio reports err= 0:\n" + r.out());
            assertFalse(r.out().toLowerCase().contains("verify failed") || r.out().contains("bad magic"), r.out());
            Root.Result seq = Root.run(600, "fio", "--name=s", "--filename=" + rig.device(), "--rw=write",
                    "--bs=1M", "--iodepth=4", "--ioengine=libaio", "--direct=1", "--offset=64M", "--size=64M",
                    "--verify=crc32c", "--do_verify=1", "--verify_state_save=0");
            assertEquals(0, seq.exit(), "fio 1 MiB:\n" + seq.out());
            long served = rig.dev.uringRequestCount() - before;
            // 16384 4 KiB writes, their reads, 64 + 64 MiB requests: all of them through the rings
            assertTrue(served >= 16384 * 2, "requests served from ring entries: " + served);

            long flushes = rig.target.flushes.get();
            Root.sh("dd", "if=/dev/urandom", "of=" + rig.device(), "bs=64k", "count=16", "seek=100", "conv=fsync", "status=none");
            assertTrue(rig.target.flushes.get() > flushes, "FSYNC reached the target through the rings");
            Root.sh("blkdiscard", "-o", "0", "-l", String.valueOf(1 << 20), rig.device());
            assertTrue(rig.target.discards.get() > 0, "discard reached the target");

            Root.dropCaches();
            FuseExt4Test.assertDeviceEqualsBacking(rig.dev.device(), rig.target.path(), rig.target.sizeBytes());
            assertEquals(0, rig.dev.errorCount(), "target errors");
        }
        assertFalse(started.dev.isAttached(), "loop device detached");
        assertFalse(Root.isMountPoint(started.dev.mountDir()), "FUSE unmounted");
        assertFalse(started.dev.isAborted(), "torn down without an abort: " + started.dev.abortReason());
        assertEquals(was, Files.readString(PARAM).trim(), "enable_uring as it was");
    }

    @Test
    void aWriteStuckInARingEntryIsAbortedByTheWatchdog() throws Exception {
        java.util.concurrent.CountDownLatch gate = new java.util.concurrent.CountDownLatch(1);
        Rig rig = startWithUring(16L << 20, FuseFrontend.Options.defaults().withUring(1, 2)
                .withWatchdogTimeout(java.time.Duration.ofSeconds(2)));
        try {
            assertTrue(rig.dev.uringActive(), rig.dev.negotiated());
            rig.target.writeGate = gate;
            long t0 = System.nanoTime();
            Root.Result r = Root.run(120, "dd", "if=/dev/zero", "of=" + rig.device(), "bs=4k", "count=1",
                    "oflag=direct", "status=none");
            long ms = (System.nanoTime() - t0) / 1_000_000;
            assertTrue(r.exit() != 0, "the stuck write failed: " + r.out());
            assertTrue(rig.dev.isAborted(), "watchdog aborted");
            assertTrue(ms >= 1500 && ms < 60_000, "aborted after the limit: " + ms + " ms");
            assertTrue(rig.dev.abortReason().contains("uring"), "the stuck entry is named: " + rig.dev.abortReason());
        } finally {
            gate.countDown();
            rig.close();
        }
        assertFalse(rig.dev.isAttached(), "loop device released");
        assertFalse(Root.isMountPoint(rig.dev.mountDir()), "FUSE unmounted");
    }

    @Test
    void optionsOffKeepRequestsOnDevFuse() throws Exception {
        try (Rig rig = startWithUring(64L << 20, FuseFrontend.Options.defaults().withUring(0, 4))) {
            assertFalse(rig.dev.uringActive(), rig.dev.negotiated());
            Root.Result r = Root.run(600, "fio", "--name=v", "--filename=" + rig.device(), "--rw=randwrite",
                    "--bs=4k", "--iodepth=16", "--ioengine=libaio", "--direct=1", "--size=16M",
                    "--verify=crc32c", "--do_verify=1", "--verify_state_save=0");
            assertEquals(0, r.exit(), "fio:\n" + r.out());
            assertEquals(0, rig.dev.uringRequestCount(), "nothing through rings");
            assertTrue(rig.target.writes.get() > 0, "I/O reached the target");
        }
    }
}
