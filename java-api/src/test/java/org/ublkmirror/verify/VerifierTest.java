package org.ublkmirror.verify;

import org.junit.jupiter.api.Test;
import org.ublkmirror.fork.RangeLock;
import org.ublkmirror.leg.BlockIO;
import org.ublkmirror.leg.FaultyStore;
import org.ublkmirror.leg.StoreBlockIO;
import org.ublkmirror.resync.Extent;
import org.ublkmirror.resync.RateLimiter;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class VerifierTest {
    static final int BS = 4096;
    static final long BLOCKS = 1000; // not a multiple of the region: the last region is partial
    static final long REGION_BLOCKS = 16;
    static final Verifier.Options OPTS = Verifier.Options.DEFAULT.withRegionBytes(REGION_BLOCKS * BS);

    final FaultyStore sa = new FaultyStore("a", BS * BLOCKS);
    final FaultyStore sb = new FaultyStore("b", BS * BLOCKS);
    final BlockIO a = new StoreBlockIO(sa, 0, BS, BLOCKS);
    final BlockIO b = new StoreBlockIO(sb, 0, BS, BLOCKS);

    VerifierTest() throws IOException {
        byte[] base = new byte[(int) (BS * BLOCKS)];
        new Random(1).nextBytes(base);
        sa.write(0, ByteBuffer.wrap(base), false);
        sb.write(0, ByteBuffer.wrap(base), false);
        sa.resetCounters();
        sb.resetCounters();
    }

    /** Changes one byte at a random offset in each block of the range on leg b. */
    void corrupt(long start, long count, Random rnd) throws IOException {
        for (long blk = start; blk < start + count; blk++) {
            byte[] one = new byte[1];
            long pos = blk * BS + rnd.nextInt(BS);
            sb.read(pos, ByteBuffer.wrap(one));
            one[0] ^= (byte) (1 + rnd.nextInt(255));
            sb.write(pos, ByteBuffer.wrap(one), false);
        }
        sa.resetCounters();
        sb.resetCounters();
    }

    @Test
    void identicalLegsAreIdentical() throws Exception {
        VerifyReport r = Verifier.verify(a, b, OPTS);
        assertTrue(r.identical());
        assertEquals(BLOCKS, r.blocksCompared());
        assertEquals((BLOCKS + REGION_BLOCKS - 1) / REGION_BLOCKS, r.regionsCompared());
        assertEquals(0, r.regionsMismatched());
        assertEquals(List.of(), r.differing());
        assertEquals(2 * BS * BLOCKS, r.bytesRead());
        assertEquals(BS * BLOCKS, sa.bytesRead());
        assertEquals(BS * BLOCKS, sb.bytesRead());
    }

    @Test
    void defaultRegionIsOneMebibyte() throws Exception {
        VerifyReport r = Verifier.verify(a, b);
        assertEquals((BLOCKS + 255) / 256, r.regionsCompared());
        assertTrue(r.identical());
    }

    @Test
    void namesSingleBlocksFirstLastAndCrossingRanges() throws Exception {
        Random rnd = new Random(2);
        corrupt(0, 1, rnd);                 // first block
        corrupt(BLOCKS - 1, 1, rnd);        // last block, in the partial last region
        corrupt(100, 1, rnd);               // a single block
        corrupt(14, 5, rnd);                // crosses the boundary at 16
        corrupt(200, 40, rnd);              // spans three regions
        corrupt(500, 2, rnd);
        corrupt(503, 2, rnd);               // a one-block gap stays a gap
        VerifyReport r = Verifier.verify(a, b, OPTS);
        assertFalse(r.identical());
        assertEquals(List.of(new Extent(0, 1), new Extent(14, 5), new Extent(100, 1), new Extent(200, 40),
                new Extent(500, 2), new Extent(503, 2), new Extent(BLOCKS - 1, 1)), r.differing());
        assertEquals(1 + 5 + 1 + 40 + 2 + 2 + 1, r.differingBlocks());
        // regions 0, 1, 6, 12, 13, 14, 31, 62 (the last)
        assertEquals(8, r.regionsMismatched());
    }

    @Test
    void randomDifferencesMatchABlockByBlockReference() throws Exception {
        Random rnd = new Random(3);
        for (int iter = 0; iter < 20; iter++) {
            int ranges = rnd.nextInt(6);
            for (int i = 0; i < ranges; i++) {
                long s = rnd.nextInt((int) BLOCKS);
                corrupt(s, 1 + rnd.nextInt((int) Math.min(40, BLOCKS - s)), rnd);
            }
            List<Extent> expected = new ArrayList<>();
            byte[] ia = sa.image();
            byte[] ib = sb.image();
            long runStart = -1;
            for (long blk = 0; blk <= BLOCKS; blk++) {
                boolean differs = blk < BLOCKS && !java.util.Arrays.equals(ia, (int) (blk * BS), (int) ((blk + 1) * BS),
                        ib, (int) (blk * BS), (int) ((blk + 1) * BS));
                if (differs && runStart < 0) {
                    runStart = blk;
                } else if (!differs && runStart >= 0) {
                    expected.add(new Extent(runStart, blk - runStart));
                    runStart = -1;
                }
            }
            long region = new long[] {1, 3, 16, 256}[rnd.nextInt(4)];
            VerifyReport r = Verifier.verify(a, b, OPTS.withRegionBytes(region * BS));
            assertEquals(expected, r.differing(), "iteration " + iter + ", region " + region);
            // and repairing makes them identical
            sb.write(0, ByteBuffer.wrap(ia), false);
            assertTrue(Verifier.verify(a, b, OPTS).identical());
        }
    }

    @Test
    void readsExactBlocksOnlyForMismatchingRegions() throws Exception {
        Random rnd = new Random(4);
        corrupt(20, 1, rnd);   // region 1
        corrupt(35, 3, rnd);   // region 2
        corrupt(990, 1, rnd);  // region 61
        long regionBytes = REGION_BLOCKS * BS;
        VerifyReport r = Verifier.verify(a, b, OPTS);
        assertEquals(3, r.regionsMismatched());
        assertEquals(BS * BLOCKS + 3 * regionBytes, sa.bytesRead());
        assertEquals(BS * BLOCKS + 3 * regionBytes, sb.bytesRead());
        assertEquals(sa.bytesRead() + sb.bytesRead(), r.bytesRead());
    }

    @Test
    void serverSideChecksumsMeanLocalReadsOnlyForMismatches() throws Exception {
        Random rnd = new Random(5);
        corrupt(300, 2, rnd);
        // stands in for a remote leg: the checksum is computed "over there", not counted as our reads
        RegionChecksum remoteB = new RegionChecksum() {
            final RegionChecksum inner = RegionChecksum.over(b);

            @Override
            public long checksum(long startBlock, long blockCount) throws IOException {
                return inner.checksum(startBlock, blockCount);
            }
        };
        long before = sb.bytesRead();
        VerifyReport r = Verifier.verify(a, b, OPTS.withChecksums(null, remoteB));
        assertEquals(List.of(new Extent(300, 2)), r.differing());
        long exactFromB = REGION_BLOCKS * BS;
        assertEquals(BS * BLOCKS + 2 * exactFromB, r.bytesRead(), "a's checksums + both sides of one region");
        assertEquals(BS * BLOCKS + exactFromB, sb.bytesRead() - before);
    }

    @Test
    void onlineVerifyWithConcurrentWritersReportsIdentical() throws Exception {
        RangeLock lock = new RangeLock();
        AtomicBoolean stop = new AtomicBoolean();
        AtomicInteger writes = new AtomicInteger();
        AtomicReference<Throwable> err = new AtomicReference<>();
        List<Thread> writers = new ArrayList<>();
        for (int w = 0; w < 3; w++) {
            long seed = w;
            Thread t = new Thread(() -> {
                Random rnd = new Random(seed);
                try {
                    while (!stop.get()) {
                        long s = rnd.nextInt((int) BLOCKS - 8);
                        int n = 1 + rnd.nextInt(8);
                        byte[] d = new byte[n * BS];
                        rnd.nextBytes(d);
                        try (RangeLock.Held h = lock.lock(s, n)) {
                            a.write(s, ByteBuffer.wrap(d), false);
                            Thread.yield(); // a window in which the legs differ
                            b.write(s, ByteBuffer.wrap(d), false);
                        }
                        writes.incrementAndGet();
                    }
                } catch (Throwable e) {
                    err.set(e);
                }
            });
            writers.add(t);
            t.start();
        }
        try {
            while (writes.get() < 50) {
                Thread.yield();
            }
            for (int i = 0; i < 5; i++) {
                VerifyReport r = Verifier.verify(a, b, OPTS.withLock(lock));
                assertTrue(r.identical(), "false difference during online verify: " + r.differing());
            }
        } finally {
            stop.set(true);
            for (Thread t : writers) {
                t.join(60_000);
            }
        }
        assertNull(err.get());
        assertTrue(writes.get() >= 50);
        assertTrue(lock.snapshot().isEmpty(), "every region lock was released");
    }

    @Test
    void progressAndRateLimit() throws Exception {
        List<VerifyProgress> seen = new ArrayList<>();
        long[] slept = {0};
        long[] now = {0};
        RateLimiter lim = new RateLimiter(1 << 20, new RateLimiter.Clock() {
            @Override
            public long nanoTime() {
                return now[0];
            }

            @Override
            public void sleepNanos(long nanos) {
                now[0] += nanos;
                slept[0] += nanos;
            }
        });
        corrupt(5, 1, new Random(6));
        VerifyReport r = Verifier.verify(a, b, OPTS.withProgress(seen::add).withLimiter(lim));
        assertEquals(r.regionsCompared(), seen.size());
        VerifyProgress last = seen.get(seen.size() - 1);
        assertEquals(new VerifyProgress(r.regionsCompared(), r.regionsCompared(), BLOCKS, 1), last);
        // ~8 MB of checksum reads + 128 KiB exact at 1 MiB/s: about 7.9 s of (fake) time
        double expected = (2.0 * BS * BLOCKS + 2.0 * REGION_BLOCKS * BS) / (1 << 20);
        assertEquals(expected, slept[0] / 1e9, 0.2);
    }

    @Test
    void differentGeometryIsOneClearLine() {
        FaultyStore sc = new FaultyStore("c", BS * 2000L);
        BlockIO bigger = new StoreBlockIO(sc, 0, BS, 2000);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> Verifier.verify(a, bigger));
        assertTrue(e.getMessage().contains("1000 blocks") && e.getMessage().contains("2000 blocks"), e.getMessage());
        assertFalse(e.getMessage().contains("\n"));
        BlockIO otherBs = new StoreBlockIO(sc, 0, 512, BLOCKS);
        assertThrows(IllegalArgumentException.class, () -> Verifier.verify(a, otherBs));
        assertThrows(IllegalArgumentException.class, () -> Verifier.verify(a, b, OPTS.withRegionBytes(1000)));
    }
}
