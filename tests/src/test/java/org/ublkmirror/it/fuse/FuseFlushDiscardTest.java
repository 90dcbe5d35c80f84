package org.ublkmirror.it.fuse;

import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.StandardOpenOption;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Cache flushes reach target.flush(), discards and write-zeroes reach the target. */
class FuseFlushDiscardTest {

    @BeforeAll
    static void machine() throws IOException {
        Root.require("losetup", "dd", "blkdiscard", "sync");
    }

    @Test
    void fsyncReachesFlush() throws Exception {
        try (Rig rig = Rig.start(64L << 20)) {
            long before = rig.target.flushes.get();
            Root.sh("dd", "if=/dev/urandom", "of=" + rig.device(), "bs=64k", "count=16", "conv=fsync", "status=none");
            assertTrue(rig.target.flushes.get() > before, "dd conv=fsync made " + (rig.target.flushes.get() - before) + " flushes");
            long mid = rig.target.flushes.get();
            Root.sh("dd", "if=/dev/urandom", "of=" + rig.device(), "bs=64k", "count=16", "oflag=direct", "status=none");
            Root.sh("sync", rig.device());
            assertTrue(rig.target.flushes.get() > mid, "sync of the device made a flush");
            assertEquals(rig.target.flushes.get(), rig.dev.flushCount());
        }
    }

    @Test
    void discardAndWriteZeroesReachTheTarget() throws Exception {
        try (Rig rig = Rig.start(64L << 20)) {
            Root.sh("dd", "if=/dev/urandom", "of=" + rig.device(), "bs=1M", "count=8", "oflag=direct", "status=none");
            assertTrue(nonZero(rig, 0, 8 << 20));

            Root.sh("blkdiscard", "-o", "0", "-l", Integer.toString(2 << 20), rig.device());
            assertTrue(rig.target.discards.get() > 0, "blkdiscard reached target.discard");
            assertEquals(2L << 20, rig.target.discardedBytes.get());
            assertTrue(zero(rig, 0, 2 << 20), "discarded range reads as zeroes");

            Root.sh("blkdiscard", "-z", "-o", Integer.toString(4 << 20), "-l", Integer.toString(1 << 20), rig.device());
            assertTrue(rig.target.zeroes.get() + rig.target.discards.get() > 1, "blkdiscard -z reached the target");
            assertTrue(zero(rig, 4 << 20, 1 << 20), "zeroed range reads as zeroes");
            assertTrue(nonZero(rig, 2 << 20, 2 << 20) && nonZero(rig, 5 << 20, 3 << 20), "neighbours intact");
            assertEquals(0, rig.dev.errorCount(), "target errors");
        }
    }

    private static ByteBuffer readDevice(Rig rig, long pos, int len) throws Exception {
        Root.dropCaches();
        try (FileChannel ch = FileChannel.open(rig.dev.device(), StandardOpenOption.READ)) {
            ByteBuffer b = ByteBuffer.allocate(len);
            while (b.hasRemaining()) {
                if (ch.read(b, pos + b.position()) < 0) {
                    throw new IOException("short read");
                }
            }
            return b.flip();
        }
    }

    private static boolean zero(Rig rig, long pos, int len) throws Exception {
        ByteBuffer b = readDevice(rig, pos, len);
        while (b.hasRemaining()) {
            if (b.get() != 0) {
                return false;
            }
        }
        return true;
    }

    /** Every 4 KiB block holds a nonzero byte (random data). */
    private static boolean nonZero(Rig rig, long pos, int len) throws Exception {
        ByteBuffer b = readDevice(rig, pos, len);
        for (int blk = 0; blk < len; blk += 4096) {
            boolean any = false;
            for (int i = 0; i < 4096 && !any; i++) {
                any = b.get(blk + i) != 0;
            }
            if (!any) {
                return false;
            }
        }
        return true;
    }
}
