package org.ublkmirror.bench;

import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.roaringbitmap.longlong.Roaring64Bitmap;
import org.ublkmirror.fork.RangeLock;
import org.ublkmirror.leg.BlockIO;
import org.ublkmirror.leg.FileStore;
import org.ublkmirror.leg.StoreBlockIO;
import org.ublkmirror.resync.Extent;
import org.ublkmirror.resync.Extents;
import org.ublkmirror.resync.Progress;
import org.ublkmirror.resync.RateLimiter;
import org.ublkmirror.resync.Resync;
import org.ublkmirror.resync.ResyncListener;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Random;
import java.util.concurrent.TimeUnit;

/**
 * Resync throughput against a plain sequential copy of the same extents (read primary, write
 * secondary, same 1 MiB buffer, no lock, no rate limit, no listener), both ending with one flush
 * of the secondary, on sparse files in a temp directory. One op = one full pass over the dirty
 * set; compare the two scores directly (lower is better).
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MILLISECONDS)
public class ResyncBench {
    static final int BS = 4096;

    @Param("256")
    public int volumeMiB;

    @Param("20")
    public int dirtyPercent;

    @Param("16")
    public int clusterBlocks; // 64 KiB

    Path dir;
    FileStore ps;
    FileStore ss;
    BlockIO primary;
    BlockIO secondary;
    List<Extent> extents;
    long dirtyBlocks;
    final RangeLock lock = new RangeLock();
    ByteBuffer buf;

    @Setup(Level.Trial)
    public void setup() throws IOException {
        dir = Files.createTempDirectory("resync-bench");
        long size = (long) volumeMiB << 20;
        long blocks = size / BS;
        ps = FileStore.createSparse(dir.resolve("primary.img"), size);
        ss = FileStore.createSparse(dir.resolve("secondary.img"), size);
        primary = new StoreBlockIO(ps, 0, BS, blocks);
        secondary = new StoreBlockIO(ss, 0, BS, blocks);
        Random rnd = new Random(42);
        long clusters = blocks / clusterBlocks;
        Roaring64Bitmap dirty = new Roaring64Bitmap();
        while (dirty.getLongCardinality() < blocks * dirtyPercent / 100) {
            long c = (long) (rnd.nextDouble() * clusters);
            dirty.addRange(c * clusterBlocks, (c + 1) * clusterBlocks);
        }
        extents = Extents.of(dirty);
        dirtyBlocks = dirty.getLongCardinality();
        byte[] data = new byte[clusterBlocks * BS];
        for (Extent e : extents) { // real data on the primary, so reads are not of holes
            for (long b = e.start(); b < e.end(); b += clusterBlocks) {
                rnd.nextBytes(data);
                primary.write(b, ByteBuffer.wrap(data, 0, (int) (Math.min(clusterBlocks, e.end() - b) * BS)), false);
            }
        }
        ps.flush();
        buf = ByteBuffer.allocateDirect((int) (Extents.DEFAULT_MAX_BLOCKS * BS));
        System.out.printf("%n[setup] %d MiB volume, %d dirty blocks (%.1f MiB) in %d extents%n",
                volumeMiB, dirtyBlocks, dirtyBlocks * BS / 1048576.0, extents.size());
    }

    @TearDown(Level.Trial)
    public void tearDown() throws IOException {
        ps.close();
        ss.close();
        Files.deleteIfExists(dir.resolve("primary.img"));
        Files.deleteIfExists(dir.resolve("secondary.img"));
        Files.deleteIfExists(dir);
    }

    @Benchmark
    public long resync() {
        Progress p = new Resync(primary, secondary, lock, extents, RateLimiter.unlimited(), ResyncListener.NONE).run();
        if (p.state() != Progress.State.DONE) {
            throw new IllegalStateException("resync " + p.state(), p.failure());
        }
        return p.bytesCopied();
    }

    @Benchmark
    public long plainCopy() throws IOException {
        long bytes = 0;
        for (Extent e : extents) {
            buf.clear().limit((int) (e.count() * BS));
            primary.read(e.start(), buf);
            buf.flip();
            secondary.write(e.start(), buf, false);
            bytes += e.count() * BS;
        }
        secondary.flush();
        return bytes;
    }
}
