package org.ublkmirror.bench;

import java.io.ByteArrayOutputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.util.Random;
import java.util.UUID;

import org.roaringbitmap.longlong.Roaring64Bitmap;
import org.roaringbitmap.longlong.Roaring64NavigableMap;
import org.ublkmirror.track.TrackingLog;
import org.ublkmirror.track.TrackingLogFormat;

/**
 * Memory and on-disk cost per dirty block of the tracking log, for a 1 TiB volume (2^28 blocks
 * of 4 KiB), and the same sets in the two 64-bit Roaring representations.
 *
 * <p>Run: {@code java -cp bench/target/benchmarks.jar org.ublkmirror.bench.TrackingMemory}
 * <ul>
 * <li>estimate: the library's getLongSizeInBytes();</li>
 * <li>heap: measured used-heap growth after GC for the whole TrackingLog (JVM object overhead included);</li>
 * <li>portable: the bitmaps' portable serialization; record: the whole TrackingLogFormat record.</li>
 * </ul>
 */
public final class TrackingMemory {
    static final long BLOCKS = 1L << 28;
    static final UUID VOL = UUID.fromString("00112233-4455-6677-8899-aabbccddeeff");
    static final long T0 = 1_700_000_000_000L;

    /** {@code n} random single blocks spread over {@code epochs} epochs. */
    static TrackingLog sparse(long n, int epochs, long seed) {
        TrackingLog log = new TrackingLog(VOL, 0, 4096, BLOCKS, 60_000);
        Random r = new Random(seed);
        for (long i = 0; i < n; i++) {
            long epoch = i * epochs / n;
            log.mark((r.nextLong() >>> 1) % BLOCKS, 1, T0 + epoch * 60_000);
        }
        return log;
    }

    /** Runs of 1..256 blocks at random places until {@code n} blocks are written (overlaps counted once). */
    static TrackingLog clustered(long n, long seed) {
        TrackingLog log = new TrackingLog(VOL, 0, 4096, BLOCKS, 60_000);
        Random r = new Random(seed);
        while (log.dirtyCount() < n) {
            for (int k = 0; k < 10_000; k++) {
                long s = (r.nextLong() >>> 1) % (BLOCKS - 256);
                log.mark(s, 1 + r.nextInt(256), T0);
            }
        }
        return log;
    }

    static TrackingLog contiguous(long n) {
        TrackingLog log = new TrackingLog(VOL, 0, 4096, BLOCKS, 60_000);
        for (long s = 0; s < n; s += 256) { // written in 1 MiB requests
            log.mark(s, Math.min(256, n - s), T0);
        }
        return log;
    }

    static long usedHeap() {
        Runtime rt = Runtime.getRuntime();
        for (int i = 0; i < 4; i++) {
            System.gc();
            try {
                Thread.sleep(50);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
        return rt.totalMemory() - rt.freeMemory();
    }

    interface Maker {
        TrackingLog make();
    }

    static void report(String name, Maker m) throws IOException {
        long before = usedHeap();
        TrackingLog log = m.make();
        log.optimize();
        long heap = usedHeap() - before;
        long card = log.dirtyCount();
        long est = log.sizeInBytes();
        long portable = 0;
        for (TrackingLog.EpochInfo e : log.epochs()) {
            portable += serialize(log.epochBlocks(e.id()));
        }
        long record = TrackingLogFormat.encode(log, 1).length;
        System.out.printf("%-34s %10d blocks %3d epochs | estimate %6.3f  heap %6.3f  portable %6.3f  record %6.3f  bytes/dirty block%n",
                name, card, log.epochs().size(), est / (double) card, heap / (double) card, portable / (double) card,
                record / (double) card);
        if (log.volumeBlocks() < 0) {
            System.out.println(log); // keep the log reachable until the heap was measured
        }
    }

    static long serialize(Roaring64NavigableMap bm) throws IOException {
        ByteArrayOutputStream bo = new ByteArrayOutputStream();
        DataOutputStream d = new DataOutputStream(bo);
        bm.serializePortable(d);
        d.flush();
        return bo.size();
    }

    static long serialize(Roaring64Bitmap bm) throws IOException {
        ByteArrayOutputStream bo = new ByteArrayOutputStream();
        DataOutputStream d = new DataOutputStream(bo);
        bm.serializePortable(d);
        d.flush();
        return bo.size();
    }

    /** The same sparse set in both 64-bit representations, filled with addLong. */
    static void compareRepresentations(long n) throws IOException {
        Random r = new Random(7);
        Roaring64NavigableMap nav = new Roaring64NavigableMap();
        Roaring64Bitmap art = new Roaring64Bitmap();
        for (long i = 0; i < n; i++) {
            long b = (r.nextLong() >>> 1) % BLOCKS;
            nav.addLong(b);
            art.addLong(b);
        }
        nav.runOptimize();
        nav.trim();
        art.runOptimize();
        art.trim();
        long c = nav.getLongCardinality();
        System.out.printf("sparse 0.1%%, Roaring64NavigableMap: estimate %6.3f  portable %6.3f bytes/dirty block%n",
                nav.getLongSizeInBytes() / (double) c, serialize(nav) / (double) c);
        System.out.printf("sparse 0.1%%, Roaring64Bitmap (ART):  estimate %6.3f  portable %6.3f bytes/dirty block%n",
                art.getLongSizeInBytes() / (double) c, serialize(art) / (double) c);
        // addRange speed of each, on single-block ranges at random addresses
        int k = 2000;
        Roaring64NavigableMap nav2 = new Roaring64NavigableMap();
        Roaring64Bitmap art2 = new Roaring64Bitmap();
        long[] bs = new long[k];
        for (int i = 0; i < k; i++) {
            bs[i] = (r.nextLong() >>> 1) % BLOCKS;
        }
        long t0 = System.nanoTime();
        for (long b : bs) {
            nav2.addRange(b, b + 1);
        }
        long t1 = System.nanoTime();
        for (long b : bs) {
            art2.addRange(b, b + 1);
        }
        long t2 = System.nanoTime();
        System.out.printf("addRange(b, b+1) x %d at random: Roaring64NavigableMap %.2f us/call, Roaring64Bitmap %.2f us/call%n",
                k, (t1 - t0) / 1e3 / k, (t2 - t1) / 1e3 / k);
    }

    public static void main(String[] args) throws IOException {
        long sparseN = BLOCKS / 1000;
        System.out.println("volume: 2^28 blocks of 4 KiB (1 TiB); sparse = 0.1% random single blocks, dense = 10%");
        report("sparse 0.1%, 1 epoch", () -> sparse(sparseN, 1, 7));
        report("sparse 0.1%, 10 epochs", () -> sparse(sparseN, 10, 7));
        report("sparse 0.1%, 60 epochs (1 h)", () -> sparse(sparseN, 60, 7));
        report("dense 10%, clustered runs 1-256", () -> clustered(BLOCKS / 10, 7));
        report("dense 10%, contiguous", () -> contiguous(BLOCKS / 10));
        compareRepresentations(sparseN);
    }
}
